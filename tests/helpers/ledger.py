"""Seed and read a ledger for the tests through the db package's own helpers, the way the
worker fills it: record the file, set its header metadata, claim it, write its outcome."""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import func, insert, select, text, update

import db
from db import ledger
from db.models import Scan, ScanDefect, ScanScore
from model.defects import DEFECTS, DefectCall


@dataclass(frozen=True)
class Row:
    """One scan to seed. ``acquired``: the file carries an acquisition time on ``day``
    (09:30 by the scanner's clock; received the next day 01:00 UTC); otherwise it is
    received on ``day`` at 12:00 UTC and carries no acquisition time."""

    day: date
    score: float | None = None
    status: str = "scored"  # scored | failed | skipped | queued
    station: str | None = "US-1"
    operator: str | None = None
    transducer: str | None = None
    manufacturer: str | None = None
    model_name: str | None = None
    body_part: str | None = None
    version: str = "v1"
    acquired: bool = True
    acquired_time: time = time(9, 30)
    received_at: datetime | None = None
    path: str | None = None  # default /drop/scan<i>.dcm (no such file); a real file's
    # size, mtime and sha256 are recorded as the ingester would
    # listed defects as (name, probability, frame share), most probable first
    defects: tuple[tuple[str, float, float], ...] = ()
    defect_head: bool = True  # False: its model version judges no defects


def _content(row: Row, i: int) -> tuple[str, int, int, str]:
    """(path, size, mtime_ns, sha256) as the ingester records them: a real file's own, or
    made-up values for the default path that does not exist."""
    path = row.path or f"/drop/scan{i}.dcm"
    if row.path is not None and os.path.isfile(row.path):
        info = os.stat(row.path)
        with open(row.path, "rb") as fh:
            sha = hashlib.sha256(fh.read()).hexdigest()
        return path, info.st_size, info.st_mtime_ns, sha
    return path, 1000, 1, hashlib.sha256(f"scan-{i}".encode()).hexdigest()


def _header(row: Row, i: int) -> dict[str, Any]:
    """The header metadata of scan ``i`` as the reader gives it (no study UID)."""
    return {
        "sop_instance_uid": f"1.2.826.0.1.3680043.10.9999.{i}",
        "modality": "US",
        "manufacturer": row.manufacturer,
        "model_name": row.model_name,
        "station_name": row.station,
        "transducer": row.transducer,
        "operator": row.operator,
        "body_part": row.body_part,
        "acquisition_datetime": (
            datetime.combine(row.day, row.acquired_time).isoformat() if row.acquired else None
        ),
    }


def grade(score: float) -> str:
    return "good" if score >= 80 else "average" if score >= 45 else "poor"


def seed(url: str, rows: Iterable[Row], *, start: int = 0) -> list[int]:
    """Write ``rows`` into the ledger at ``url``; returns the scan ids."""
    ids = []
    with db.session_scope(url) as s:
        for i, row in enumerate(rows, start=start):
            received = _received(row, i)
            path, size, mtime_ns, sha = _content(row, i)
            scan = ledger.record_received(
                s,
                path=path,
                size_bytes=size,
                mtime_ns=mtime_ns,
                sha256=sha,
                now=received,
            )
            meta = {**_header(row, i), "study_instance_uid": f"1.2.826.0.1.3680043.10.9998.{i}"}
            s.execute(
                update(Scan).where(Scan.id == scan.id).values(**ledger.metadata_columns(meta))
            )
            ids.append(scan.id)
            if row.status == "queued":
                continue
            token = f"seed-{i}"
            [claimed] = ledger.claim(
                s,
                [scan.id],
                token=token,
                worker="seed:1",
                stale_before=received - timedelta(hours=1),
                dead_before=received - timedelta(days=3650),
                now=received,
            )
            if row.status in ("failed", "skipped"):
                ledger.finish(
                    s,
                    scan.id,
                    token,
                    ledger.Outcome(row.status, f"seeded {row.status}"),
                    now=received,
                )
                continue
            assert row.status == "scored" and row.score is not None, row
            ledger.ensure_model_version(
                s, row.version, defect_names=DEFECTS if row.defect_head else None
            )
            calls = tuple(DefectCall(*d) for d in row.defects)
            summary = SimpleNamespace(
                score=row.score,
                mean=row.score,
                min=max(0.0, row.score - 6),
                p10=max(0.0, row.score - 4),
                grade=grade(row.score),
                frames_scored=4,
                defects=calls,
                frame_defects=(calls[0].name if calls else None,),
            )
            assert ledger.write_score(
                s,
                claimed,
                token,
                model_version=row.version,
                aggregate="mean",
                summary=summary,
                frame_scores=[(0, row.score)],
                now=received + timedelta(minutes=1),
            )
    return ids


def supersede(url: str, scan_id: int, version: str, defect: str) -> None:
    """Give scan ``scan_id`` an earlier result by model version ``version``, a poor score
    that listed ``defect`` first: what a rescored scan keeps in the ledger. The scan's
    outcome stays with its current model version, so no figure may count this result."""
    with db.session_scope(url) as s:
        ledger.ensure_model_version(s, version, defect_names=DEFECTS)
        scan = s.get(Scan, scan_id)
        assert scan is not None and scan.model_version != version, scan_id
        s.add(
            ScanScore(
                scan_id=scan_id, model_version=version, sha256=scan.sha256, score=20.0,
                mean_score=20.0, min_score=20.0, p10_score=20.0, grade="poor",
                first_defect=defect, frames_scored=1, aggregate="mean",
                scored_at=scan.received_at,
            )
        )  # fmt: skip
        s.flush()
        s.add(
            ScanDefect(
                scan_id=scan_id, model_version=version, defect=defect, rank=1,
                probability=0.9, frame_share=1.0,
            )
        )  # fmt: skip


def plain(value: Any) -> Any:
    """A database value as plain Python: dates as ISO text, numbers as floats rounded to
    4 places (NUMERIC on PostgreSQL, REAL on SQLite)."""
    if isinstance(value, Decimal | float):
        return round(float(value), 4)
    if hasattr(value, "isoformat") and not isinstance(value, str):
        return value.isoformat()[:10]
    return value


def query_rows(url: str, sql: str) -> list[dict[str, Any]]:
    """The rows of ``sql``, read-only, as dicts of :func:`plain` values."""
    with db.session_scope(url, readonly=True) as s:
        return [{k: plain(v) for k, v in r.items()} for r in s.execute(text(sql)).mappings()]


def _received(row: Row, i: int) -> datetime:
    if row.received_at is not None:
        received = row.received_at
    elif row.acquired:
        received = datetime.combine(row.day + timedelta(days=1), time(1, 0), UTC)
    else:
        received = datetime.combine(row.day, time(12, 0), UTC)
    return received + timedelta(microseconds=i)


def bulk_seed(url: str, rows: Sequence[Row]) -> list[int]:
    """The same ledger rows as :func:`seed` writes, inserted in bulk through the models
    (thousands of scans in a second, for the statistics tests). Ids follow the highest."""
    with db.session_scope(url) as s:
        start = int(s.scalar(select(func.max(Scan.id))) or 0) + 1
        for version in sorted({r.version for r in rows if r.status == "scored"}):
            ledger.ensure_model_version(s, version)
        scans, scores = [], []
        for i, row in enumerate(rows, start=start):
            received = _received(row, i)
            path, size, mtime_ns, sha = _content(row, i)
            header = _header(row, i)
            uid = header["sop_instance_uid"]
            meta = ledger.metadata_columns(header)
            done = row.status != "queued"
            scans.append(
                {
                    **meta,
                    "id": i,
                    "path": path,
                    "size_bytes": size,
                    "mtime_ns": mtime_ns,
                    "sha256": sha,
                    "status": row.status,
                    "reason": None if row.status in ("scored", "queued") else "seeded",
                    "attempts": 1 if done else 0,
                    "model_version": row.version if row.status == "scored" else None,
                    "received_at": received,
                    "queued_at": received,
                    "started_at": received if done else None,
                    "finished_at": received + timedelta(minutes=1) if done else None,
                    "updated_at": received,
                }
            )
            if row.status == "scored":
                assert row.score is not None, row
                scores.append(
                    {
                        "scan_id": i,
                        "model_version": row.version,
                        "sha256": sha,
                        "sop_instance_uid": uid,
                        "score": row.score,
                        "mean_score": row.score,
                        "min_score": max(0.0, row.score - 6),
                        "p10_score": max(0.0, row.score - 4),
                        "grade": grade(row.score),
                        "frames_scored": 4,
                        "aggregate": "mean",
                        "scored_at": received + timedelta(minutes=1),
                    }
                )
        s.execute(insert(Scan), scans)
        if scores:
            s.execute(insert(ScanScore), scores)
        if s.get_bind().dialect.name == "postgresql":  # explicit ids: move the sequence on
            s.execute(
                text("SELECT setval(pg_get_serial_sequence('scans', 'id'), :n)"),
                {"n": start + len(rows) - 1},
            )
    return list(range(start, start + len(rows)))


STATIONS = (
    ("US-ER-1", "GE Healthcare", "LOGIQ E10"),
    ("US-ER-2", "GE Healthcare", "LOGIQ E10"),
    ("US-RAD-3", "Philips", "EPIQ 7"),
    ("US-RAD-4", "Philips", "EPIQ 7"),
    ("US-OB-5", "Siemens", "ACUSON Sequoia"),
    ("US-CARD-6", "Canon", "Aplio i800"),
)
TRANSDUCERS = ("C1-6", "L2-9", "C5-1", "L12-3", "5C1", "PVI-475BX")
BODY_PARTS = ("ABDOMEN", "BREAST", "THYROID", "PELVIS", "HEART")


def realistic_rows(
    until: date,
    *,
    days: int = 60,
    per_day: int = 40,
    degrade: str | None = "US-RAD-4",
    degrade_days: int = 7,
    seed_value: int = 7,
) -> list[Row]:
    """A few months of a department: six stations of four makes, a dozen operators, probes
    and body parts; scores near each station's usual level; about 2 % failed and 1 %
    skipped; ``degrade`` loses about 18 points over its last ``degrade_days`` days."""
    rng = random.Random(seed_value)
    operators = [f"op-{k:02d}" for k in range(1, 13)]
    level = {
        "US-ER-1": 66,
        "US-ER-2": 63,
        "US-RAD-3": 76,
        "US-RAD-4": 74,
        "US-OB-5": 71,
        "US-CARD-6": 60,
    }
    rows: list[Row] = []
    for d in range(days):
        day = until - timedelta(days=days - 1 - d)
        weekend = day.weekday() >= 5
        for _ in range(int(per_day * (0.4 if weekend else 1.0) * rng.uniform(0.8, 1.2))):
            station, maker, model = rng.choice(STATIONS)
            operator = rng.choice(operators)
            mu = level[station] + (-8 if operator == "op-07" else 0)
            if degrade == station and (until - day).days < degrade_days:
                mu -= 18
            status = rng.choices(("scored", "failed", "skipped"), (97, 2, 1))[0]
            score = min(100.0, max(0.0, rng.gauss(mu, 13)))
            rows.append(
                Row(
                    day=day,
                    score=round(score, 2) if status == "scored" else None,
                    status=status,
                    station=station,
                    manufacturer=maker,
                    model_name=model,
                    operator=operator,
                    transducer=rng.choice(TRANSDUCERS),
                    body_part=rng.choice(BODY_PARTS),
                    acquired=rng.random() > 0.05,
                    acquired_time=time(rng.randrange(7, 19), rng.randrange(60)),
                )
            )
    return rows


def scores_of(rows: Sequence[Row]) -> list[float]:
    return [r.score for r in rows if r.status == "scored" and r.score is not None]


def receive(url: str, path: Path, now: datetime | None = None) -> int:
    """Record ``path`` in the ledger as the ingester would (received ``now``, by default the
    clock's time); its scan id."""
    st = path.stat()
    with db.session_scope(url) as s:
        return ledger.record_received(
            s,
            path=str(path),
            size_bytes=st.st_size,
            mtime_ns=st.st_mtime_ns,
            sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
            now=now,
        ).id


def scans(url: str) -> list[Scan]:
    """Every row of the ledger, by id."""
    with db.session_scope(url, readonly=True) as s:
        return list(s.scalars(select(Scan).order_by(Scan.id)).all())


def settled(url: str, count: int) -> bool:
    """The ledger holds ``count`` scans, each scored, skipped or failed."""
    rows = scans(url)
    return len(rows) == count and all(r.status in ("scored", "skipped", "failed") for r in rows)


def finish_all(url: str, status: str = "scored") -> None:
    """Every scan finished with ``status`` (as if scored), behind the ledger's back."""
    with db.session_scope(url) as s:
        s.execute(update(Scan).values(status=status, finished_at=db.models.utcnow()))

"""The report's SQL over the QA views (``qa_scan_scores``, ``qa_scan_outcomes``; see
docs/sql.md) and the ``scans`` table: the scored scans of a span of days, the report period,
the current model version, outcome counts, the lowest-scoring scans and their files.

The functions take a session and never commit. The scored scans of a span of days are
read once, one narrow row per scan (:func:`fetch_scores`), and every figure is computed
from those arrays (:mod:`db.qa.figures`); a year of a large department is about a million
rows. The date filter is written so that PostgreSQL and SQLite answer it from the existing
indexes on ``acquisition_datetime`` and ``received_at``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Date, DateTime, bindparam, text
from sqlalchemy.orm import Session

from db import paths
from db.models import UTCDateTime
from db.qa.figures import WorstScan
from db.qa.rows import (
    DEFAULT_DAYS,
    DEFECT,
    DIMENSIONS,
    GRADES,
    NO_DEFECT,
    NOT_JUDGED,
    Period,
    ScoreRows,
)
from db.queries import scan_defects

__all__ = [
    "ScannedFile",
    "current_model_version",
    "defect_vocabulary",
    "fetch_scores",
    "latest_day",
    "listing",
    "outcome_counts",
    "resolve_period",
    "scan_files",
    "worst_scans",
]

FETCH_BATCH = 50_000


def _day(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _window_sql() -> str:
    """``day BETWEEN :since AND :until``, plus the same condition spelled on the indexed
    columns so that the databases can use their indexes (``day`` is an expression)."""
    return (
        "((acquired_at >= :since_local AND acquired_at < :until_local) "
        "OR (acquired_at IS NULL AND received_at >= :since_utc AND received_at < :until_utc)) "
        "AND day BETWEEN :since AND :until"
    )


def _window_params(since: date, until: date) -> dict[str, Any]:
    end = until + timedelta(days=1)
    return {
        "since": since,
        "until": until,
        "since_local": datetime.combine(since, time()),
        "until_local": datetime.combine(end, time()),
        "since_utc": datetime.combine(since, time(), UTC),
        "until_utc": datetime.combine(end, time(), UTC),
    }


def _window_query(sql: str) -> Any:
    return text(sql).bindparams(
        bindparam("since", type_=Date),
        bindparam("until", type_=Date),
        bindparam("since_local", type_=DateTime()),
        bindparam("until_local", type_=DateTime()),
        bindparam("since_utc", type_=UTCDateTime()),
        bindparam("until_utc", type_=UTCDateTime()),
    )


def _tune(session: Session) -> None:
    """PostgreSQL: no JIT compilation for the report's few large reads (it costs more
    than it saves here). Only for this transaction."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL jit = off"))


def defect_vocabulary(session: Session) -> dict[str, list[str] | None]:
    """The defect names each model version judges, in its output order (None: none)."""
    out: dict[str, list[str] | None] = {}
    for version, names in session.execute(
        text("SELECT version, defect_names FROM model_versions")
    ).all():
        out[str(version)] = None if names is None else [str(n) for n in json.loads(names)]
    return out


def fetch_scores(session: Session, since: date, until: date) -> ScoreRows:
    """Read the scored scans of ``since``..``until`` (every model version)."""
    columns = ", ".join(DIMENSIONS.values())
    query = _window_query(
        "SELECT scan_id, day, CAST(score AS DOUBLE PRECISION) AS score, grade, "
        f"model_version, first_defect, {columns} FROM qa_scan_scores WHERE {_window_sql()}"
    )
    _tune(session)
    vocabulary = defect_vocabulary(session)
    # A client-side cursor: a server-side one makes PostgreSQL plan for the first rows
    # (cursor_tuple_fraction) and is two times slower here; rows become objects in batches.
    result = session.execute(query, _window_params(since, until))
    columns_out: list[list[Any]] = [[] for _ in range(6 + len(DIMENSIONS))]
    for batch in result.partitions(FETCH_BATCH):
        for target, column in zip(columns_out, zip(*batch, strict=True), strict=True):
            target.extend(column)
    ids, days, scores, grades, versions, firsts, *groups = columns_out
    day_of = {value: _day(value).toordinal() for value in set(days)}
    grade_index = {g: i for i, g in enumerate(GRADES)}
    version_codes: dict[Any, int] = {}
    version = np.fromiter(
        (version_codes.setdefault(v, len(version_codes)) for v in versions),
        dtype=np.int32,
        count=len(versions),
    )
    codes: dict[str, NDArray[np.int32]] = {}
    labels: dict[str, list[str | None]] = {}
    for dim, values in zip(DIMENSIONS, groups, strict=True):
        index: dict[Any, int] = {}
        codes[dim] = np.fromiter(
            (index.setdefault(v, len(index)) for v in values), dtype=np.int32, count=len(values)
        )
        labels[dim] = [None if v is None else str(v) for v in index]
    judges = np.array([vocabulary.get(str(v)) is not None for v in version_codes], dtype=bool)
    judged = judges[version] if len(version_codes) else np.zeros(0, dtype=bool)
    names = _defect_order(vocabulary, firsts)
    name_code = {n: i for i, n in enumerate(names)}
    defect = np.fromiter(
        (-1 if f is None else name_code[str(f)] for f in firsts), dtype=np.int16, count=len(firsts)
    )
    # --by defect: the first defect's code; clean and not judged after the names
    codes[DEFECT] = np.where(defect >= 0, defect, np.where(judged, len(names), len(names) + 1))
    codes[DEFECT] = codes[DEFECT].astype(np.int32)
    labels[DEFECT] = [*names, NO_DEFECT, NOT_JUDGED]
    return ScoreRows(
        scan_id=np.asarray(ids, dtype=np.int64),
        day=np.fromiter((day_of[d] for d in days), dtype=np.int64, count=len(days)),
        score=np.asarray(scores, dtype=np.float64),
        grade=np.fromiter((grade_index[g] for g in grades), dtype=np.int8, count=len(grades)),
        version=version,
        versions=[str(v) for v in version_codes],
        codes=codes,
        labels=labels,
        defect=defect,
        judged=judged,
        defect_names=names,
    )


def _defect_order(vocabulary: dict[str, list[str] | None], firsts: list[Any]) -> list[str]:
    """Every defect name judged by a model version or seen as a first defect: in the
    models' output order (the vocabulary of model/defects.py), then any other by name."""
    names: dict[str, None] = {}
    for listed in vocabulary.values():
        names.update(dict.fromkeys(listed or ()))
    names.update(dict.fromkeys(sorted({str(f) for f in set(firsts) if f is not None})))
    return list(names)


def listing(session: Session, rows: ScoreRows, defect: str) -> NDArray[np.bool_]:
    """Whether each scan of ``rows`` lists ``defect`` (at any rank) for the model version of
    its outcome (``scan_defects``, by its index on defect, model version and scan id)."""
    if len(rows) == 0:
        return np.zeros(0, dtype=bool)
    found = session.execute(
        text(
            "SELECT d.scan_id FROM scan_defects d JOIN scans s ON s.id = d.scan_id "
            "AND s.model_version = d.model_version "
            "WHERE d.defect = :defect AND d.model_version IN :versions "
            "AND d.scan_id BETWEEN :low AND :high"
        ).bindparams(bindparam("versions", expanding=True)),
        {
            "defect": defect,
            "versions": rows.versions,
            "low": int(rows.scan_id.min()),
            "high": int(rows.scan_id.max()),
        },
    ).scalars()
    return np.isin(rows.scan_id, np.fromiter(found, dtype=np.int64))


# --- periods and model versions ---------------------------------------------------------


def latest_day(session: Session, not_after: date) -> date | None:
    """The most recent day with any received scan, not after ``not_after`` (a scanner
    whose clock runs ahead must not drag the default period into the future)."""
    end = not_after + timedelta(days=1)
    acquired = session.execute(
        text("SELECT MAX(acquired_at) FROM qa_scan_outcomes WHERE acquired_at < :end").bindparams(
            bindparam("end", type_=DateTime())
        ),
        {"end": datetime.combine(end, time())},
    ).scalar()
    received = session.execute(
        text(
            "SELECT MAX(received_at) FROM qa_scan_outcomes "
            "WHERE acquired_at IS NULL AND received_at < :end"
        ).bindparams(bindparam("end", type_=UTCDateTime())),
        {"end": datetime.combine(end, time(), UTC)},
    ).scalar()
    found = []
    if acquired is not None:
        found.append(_day(acquired))
    if received is not None:
        value = received if isinstance(received, datetime) else _parse_utc(received)
        found.append(value.astimezone(UTC).date() if value.tzinfo else value.date())
    return max(found) if found else None


def _parse_utc(value: Any) -> datetime:
    return datetime.fromisoformat(str(value))


def resolve_period(
    session: Session,
    *,
    since: date | None,
    until: date | None,
    today: date,
    default_days: int = DEFAULT_DAYS,
) -> Period | None:
    """The report period. Without ``until``: the latest day with scans (up to ``today``);
    without ``since``: ``default_days`` days up to ``until``. None when no day qualifies
    (nothing received up to ``until``)."""
    if until is None:
        until = latest_day(session, today)
        if until is None:
            return None
    if since is None:
        since = until - timedelta(days=default_days - 1)
    if since > until:
        raise ValueError(f"the period starts ({since}) after it ends ({until})")
    return Period(since, until)


def current_model_version(session: Session) -> str | None:
    """The model version that scored the most recent scan (None: nothing scored yet)."""
    return session.execute(
        text(
            "SELECT model_version FROM qa_scan_scores ORDER BY scored_at DESC, scan_id DESC LIMIT 1"
        )
    ).scalar()


def outcome_counts(
    session: Session, period: Period, dimension: str | None = None
) -> dict[str | None, dict[str, int]]:
    """Received scans of ``period`` per group and status (every model version: a file that
    fails to decode has no score to tell the versions apart)."""
    col = "NULL" if dimension is None else DIMENSIONS[dimension]
    rows = session.execute(
        _window_query(
            f"SELECT {col} AS grp, status, COUNT(*) AS n FROM qa_scan_outcomes "
            f"WHERE {_window_sql()} GROUP BY 1, 2"
        ),
        _window_params(period.since, period.until),
    ).all()
    out: dict[str | None, dict[str, int]] = {}
    for grp, status, n in rows:
        out.setdefault(None if grp is None else str(grp), {})[str(status)] = int(n)
    return out


def worst_scans(
    session: Session, rows: ScoreRows, keep: NDArray[np.bool_], limit: int = 20
) -> list[WorstScan]:
    """The ``limit`` lowest-scoring scans among ``keep`` (ties: lowest scan id first)."""
    selected = np.flatnonzero(keep)
    if selected.size == 0 or limit <= 0:
        return []
    order = np.lexsort((rows.scan_id[selected], rows.score[selected]))[:limit]
    ids = [int(i) for i in rows.scan_id[selected[order]]]
    judged = {i for i, j in zip(ids, rows.judged[selected[order]], strict=True) if j}
    listed = scan_defects(session, sorted(judged))
    found = session.execute(
        text(
            "SELECT scan_id, day, CAST(score AS DOUBLE PRECISION) AS score, grade, "
            "CAST(min_frame_score AS DOUBLE PRECISION) AS min_frame_score, frames_scored, "
            "station_name, manufacturer, model_name, transducer, operator, body_part, "
            "sop_instance_uid, model_version FROM qa_scan_scores WHERE scan_id IN :ids"
        ).bindparams(bindparam("ids", expanding=True)),
        {"ids": ids},
    ).mappings()
    by_id = {}
    for r in found:
        scan_id = int(r["scan_id"])
        by_id[scan_id] = WorstScan(
            scan_id=scan_id,
            day=_day(r["day"]),
            score=float(r["score"]),
            grade=str(r["grade"]),
            min_frame_score=None if r["min_frame_score"] is None else float(r["min_frame_score"]),
            frames_scored=int(r["frames_scored"]),
            station_name=r["station_name"],
            manufacturer=r["manufacturer"],
            model_name=r["model_name"],
            transducer=r["transducer"],
            operator=r["operator"],
            body_part=r["body_part"],
            sop_instance_uid=r["sop_instance_uid"],
            model_version=str(r["model_version"]),
            defects=tuple(listed.get(scan_id, ())) if scan_id in judged else None,
        )
    return [by_id[i] for i in ids if i in by_id]


@dataclass(frozen=True)
class ScannedFile:
    """Where a scan's file may be now (its new path if it was moved after scoring, then its
    path on arrival) and what its content was when it was received, so that a thumbnail is
    shown only for that same content. Never shown in a report. ``paths`` as ``os``
    functions take them (from the original bytes of a name stored escaped: db/paths.py)."""

    paths: tuple[str, ...]
    size_bytes: int
    sha256: str


def scan_files(session: Session, scan_ids: Iterable[int]) -> dict[int, ScannedFile]:
    """The files of ``scan_ids`` (for thumbnails), with their recorded size and sha256."""
    ids = sorted(set(scan_ids))
    if not ids:
        return {}
    rows = session.execute(
        text(
            "SELECT id, disposed_path, disposed_path_bytes, path, path_bytes, size_bytes, "
            "sha256 FROM scans WHERE id IN :ids"
        ).bindparams(bindparam("ids", expanding=True)),
        {"ids": ids},
    ).all()
    return {
        int(i): ScannedFile(
            tuple(
                paths.fs_path(p, _bytes(raw))
                for p, raw in ((moved, moved_raw), (path, raw_path))
                if p
            ),
            int(size),
            str(sha),
        )
        for i, moved, moved_raw, path, raw_path, size, sha in rows
    }


def _bytes(value: object) -> bytes | None:
    """A LargeBinary value as bytes (drivers give bytes or memoryview)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return None

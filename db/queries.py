"""Read-only questions asked of the ledger by ``usqa scans`` and ``usqa status``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from db.models import (
    ACTIVE,
    SCORED,
    STATUSES,
    ModelVersion,
    Scan,
    ScanDefect,
    ScanScore,
    WorkerProcess,
    utcnow,
)

__all__ = ["LedgerStatus", "WorkerSeen", "list_scans", "scan_defects", "status_summary"]


def list_scans(
    session: Session,
    *,
    status: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
    defect: str | None = None,
) -> list[dict[str, Any]]:
    """Scans received since ``since`` (all when None), oldest first, each with the score,
    grade and defects of the model version that produced its outcome.

    ``defect``: only scored scans whose current outcome lists that defect, at any rank (the
    name is taken as given: the caller checks it against the vocabulary).

    ``first_defect``: its most probable defect (None: clean, not judged or no score);
    ``defects``: ``{name, probability, frames}`` dicts, most probable first, ``[]`` when
    clean, None when there is no score or its model does not judge defects."""
    query = (
        select(Scan, ScanScore, ModelVersion.defect_names)
        .outerjoin(
            ScanScore,
            and_(ScanScore.scan_id == Scan.id, ScanScore.model_version == Scan.model_version),
        )
        .outerjoin(ModelVersion, ModelVersion.version == ScanScore.model_version)
        .order_by(Scan.id)
    )
    if status is not None:
        query = query.where(Scan.status == status)
    if since is not None:
        query = query.where(Scan.received_at >= since)
    if defect is not None:
        query = query.where(Scan.status == SCORED, lists_defect(defect))
    if limit is not None:
        # the most recent `limit` rows, still listed oldest first
        query = query.order_by(None).order_by(Scan.id.desc()).limit(limit)
    rows = session.execute(query).all()
    if limit is not None:
        rows = list(reversed(rows))
    judged = [scan.id for scan, score, names in rows if score is not None and names is not None]
    defects = scan_defects(session, judged)
    out = []
    for scan, score, names in rows:
        judged_here = score is not None and names is not None
        out.append(
            {
                "id": scan.id,
                "path": scan.path,
                "sha256": scan.sha256,
                "status": scan.status,
                "score": None if score is None else round(score.score, 2),
                "grade": None if score is None else score.grade,
                "first_defect": None if score is None else score.first_defect,
                "defects": defects.get(scan.id, []) if judged_here else None,
                "frames_scored": None if score is None else score.frames_scored,
                "reason": scan.reason,
                "attempts": scan.attempts,
                "model_version": scan.model_version,
                "duplicate_of": scan.duplicate_of_id,
                "sop_instance_uid": scan.sop_instance_uid,
                "modality": scan.modality,
                "station_name": scan.station_name,
                "received_at": scan.received_at.isoformat(),
                "finished_at": scan.finished_at.isoformat() if scan.finished_at else None,
                "disposition": scan.disposition,
            }
        )
    return out


def lists_defect(defect: str) -> ColumnElement[bool]:
    """The scan's current outcome (its model version) lists ``defect``: answered from the
    primary key of ``scan_defects`` for each scan."""
    return (
        select(ScanDefect.scan_id)
        .where(
            ScanDefect.scan_id == Scan.id,
            ScanDefect.model_version == Scan.model_version,
            ScanDefect.defect == defect,
        )
        .exists()
    )


def scan_defects(
    session: Session, scan_ids: Sequence[int]
) -> dict[int, list[dict[str, float | str]]]:
    """The defects listed for each scan by the model version of its outcome, most probable
    first, as ``{name, probability, frames}`` dicts (the shape of ``DefectCall.as_dict``).
    Scans without any are absent."""
    found: dict[int, list[dict[str, float | str]]] = {}
    ids = sorted(set(scan_ids))
    for start in range(0, len(ids), 500):
        query = (
            select(ScanDefect)
            .join(
                Scan,
                and_(Scan.id == ScanDefect.scan_id, Scan.model_version == ScanDefect.model_version),
            )
            .where(ScanDefect.scan_id.in_(ids[start : start + 500]))
            .order_by(ScanDefect.scan_id, ScanDefect.rank)
        )
        for row in session.scalars(query):
            found.setdefault(row.scan_id, []).append(
                {
                    "name": row.defect,
                    "probability": round(row.probability, 3),
                    "frames": round(row.frame_share, 3),
                }
            )
    return found


@dataclass
class WorkerSeen:
    """A worker process and when its heartbeat was last seen."""

    name: str
    mode: str
    model_version: str | None
    started_at: datetime
    last_seen_at: datetime
    stopped_at: datetime | None
    scans_done: int


@dataclass
class LedgerStatus:
    """What ``usqa status`` reports (queue depth comes from the broker, not from here)."""

    counts: dict[str, int]
    oldest_waiting_id: int | None
    oldest_waiting_since: datetime | None
    last_scored_at: datetime | None
    workers: list[WorkerSeen] = field(default_factory=list)

    def waiting_seconds(self, now: datetime | None = None) -> float:
        """How long the oldest unfinished scan has waited (0 when none waits)."""
        if self.oldest_waiting_since is None:
            return 0.0
        return max(0.0, ((now or utcnow()) - self.oldest_waiting_since).total_seconds())


def status_summary(session: Session, *, workers_since: datetime | None = None) -> LedgerStatus:
    """Counts per status, the oldest scan still waiting for an outcome, the last scoring
    time, and the workers whose heartbeat was seen since ``workers_since``."""
    counts = dict.fromkeys(STATUSES, 0)
    for status, count in session.execute(
        select(Scan.status, func.count()).group_by(Scan.status)
    ).all():
        counts[status] = int(count)
    oldest = session.execute(
        select(Scan.id, Scan.received_at)
        .where(Scan.status.in_(ACTIVE))
        .order_by(Scan.received_at, Scan.id)
        .limit(1)
    ).first()
    last_scored = session.scalar(select(func.max(Scan.finished_at)).where(Scan.status == SCORED))
    query = select(WorkerProcess).order_by(WorkerProcess.last_seen_at.desc())
    if workers_since is not None:
        query = query.where(WorkerProcess.last_seen_at >= workers_since)
    workers = [
        WorkerSeen(
            name=w.name,
            mode=w.mode,
            model_version=w.model_version,
            started_at=w.started_at,
            last_seen_at=w.last_seen_at,
            stopped_at=w.stopped_at,
            scans_done=w.scans_done,
        )
        for w in session.scalars(query).all()
    ]
    return LedgerStatus(
        counts=counts,
        oldest_waiting_id=None if oldest is None else int(oldest[0]),
        oldest_waiting_since=None if oldest is None else oldest[1],
        last_scored_at=last_scored,
        workers=workers,
    )

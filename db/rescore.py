"""Re-scoring with a new model version: find the scans of a period that have no score for
that version, put them back to ``queued``, and let a worker whose model already scored a
scan write that outcome again without a second score.

The scores of earlier versions are never touched: ``scan_scores`` keeps one row per scan
and version. Every function takes an open session and never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import Exists

from db import paths
from db.clock import db_now
from db.models import PROCESSING, QUEUED, SCORED, TERMINAL, Scan, ScanScore, utcnow

__all__ = [
    "RANGE_COLUMNS",
    "file_location",
    "has_score",
    "rescore_candidates",
    "rescore_requeue",
    "restore_scored",
]

# what a date range is compared with: when usqa received the file (UTC), or when the
# scanner acquired it (its own wall-clock time, as recorded in the file)
RANGE_COLUMNS = {"received": Scan.received_at, "acquired": Scan.acquisition_datetime}


def file_location(scan: Scan) -> str | None:
    """Where the scan's file is now: its moved place in ``done/``/``failed/`` when the
    after-scoring policy moved it, None when the policy deleted it or found it missing,
    else the path it was received at. The path to open, as ``os`` functions take it: from
    the original bytes of a name stored escaped (db/paths.py)."""
    if scan.disposition == "moved" and scan.disposed_path:
        return paths.fs_path(scan.disposed_path, scan.disposed_path_bytes)
    if scan.disposition in ("deleted", "missing"):
        return None
    return paths.fs_path(scan.path, scan.path_bytes)


def has_score(model_version: str) -> Exists:
    """SQL condition: the scan has a score for ``model_version``."""
    return exists().where(ScanScore.scan_id == Scan.id, ScanScore.model_version == model_version)


def rescore_candidates(
    session: Session,
    *,
    model_version: str,
    statuses: Sequence[str] = (SCORED,),
    since: datetime | None = None,
    until: datetime | None = None,
    by: str = "received",
) -> list[Scan]:
    """Scans with one of ``statuses`` (terminal ones only) and no score for
    ``model_version``, received (or acquired, ``by="acquired"``) in ``since`` <= t <
    ``until``, oldest first. Copies of another scan (``duplicate_of`` set) are left out: their
    original is re-scored instead. ``since``/``until`` are aware UTC for ``received`` and
    naive scanner-local time for ``acquired``."""
    wanted = [s for s in statuses if s in TERMINAL]
    if not wanted:
        raise ValueError(f"statuses {list(statuses)!r}: expected some of {', '.join(TERMINAL)}")
    column = RANGE_COLUMNS[by]
    query = select(Scan).where(
        Scan.status.in_(wanted),
        Scan.duplicate_of_id.is_(None),
        ~has_score(model_version),
    )
    if since is not None:
        query = query.where(column >= since)
    if until is not None:
        query = query.where(column < until)
    return list(session.scalars(query.order_by(Scan.id)).all())


def rescore_requeue(
    session: Session, scans: Sequence[Scan], model_version: str, now: datetime | None = None
) -> list[int]:
    """Put ``scans`` back to ``queued`` for ``model_version``: attempts reset, reason,
    claim and times cleared (the earlier outcome's model version and scores stay). Only
    rows still in the status they were read in and still without a score for that version
    change, so a concurrent rescore or worker cannot queue a scan twice. Returns their ids."""
    now = now or db_now(session)
    done: list[int] = []
    by_status: dict[str, list[int]] = {}
    for scan in scans:
        by_status.setdefault(scan.status, []).append(scan.id)
    for status, ids in by_status.items():
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            result = session.execute(
                update(Scan)
                .where(
                    Scan.id.in_(chunk),
                    Scan.status == status,
                    Scan.duplicate_of_id.is_(None),
                    ~has_score(model_version),
                )
                .values(
                    status=QUEUED,
                    attempts=0,
                    reason=None,
                    claim_token=None,
                    queued_at=now,
                    started_at=None,
                    finished_at=None,
                    updated_at=now,
                )
                .returning(Scan.id)
                .execution_options(synchronize_session=False)
            )
            done.extend(int(i) for i in result.scalars().all())
    return sorted(done)


def restore_scored(
    session: Session, scan_id: int, token: str, model_version: str, now: datetime | None = None
) -> bool:
    """Mark a scan this worker holds ``scored`` again, by ``model_version``, which already
    has a score for it (a re-queued scan picked up by a worker still on that version). No
    score is written. Returns False if the claim was lost."""
    now = now or utcnow()
    result = session.execute(
        update(Scan)
        .where(Scan.id == scan_id, Scan.status == PROCESSING, Scan.claim_token == token)
        .values(
            status=SCORED,
            reason=None,
            model_version=model_version,
            finished_at=now,
            updated_at=now,
            claim_token=None,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]

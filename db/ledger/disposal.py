"""After scoring: the finished scans whose file the after-scoring policy has not dealt with
yet, and the record of what it did (kept, moved, deleted, missing, replaced, refused)."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db import paths
from db.ledger.lookups import path_under
from db.models import OUTBOX_PENDING, TERMINAL, ResultOutbox, Scan, utcnow

__all__ = ["mark_disposed", "pending_disposal"]


def pending_disposal(
    session: Session, under: str, limit: int = 200, *, after_reports: bool = False
) -> list[Scan]:
    """Terminal scans below the folder ``under`` (as ``os`` functions give it) whose file
    has not been dealt with yet. With ``after_reports``, not those whose structured report
    still waits in the results outbox (it is built from the file: delete it afterwards)."""
    query = select(Scan).where(
        Scan.status.in_(TERMINAL), Scan.disposed_at.is_(None), path_under(under)
    )
    if after_reports:
        waiting = (
            select(ResultOutbox.id)
            .where(ResultOutbox.scan_id == Scan.id, ResultOutbox.state == OUTBOX_PENDING)
            .exists()
        )
        query = query.where(~waiting)
    return list(session.scalars(query.order_by(Scan.id).limit(limit)).all())


def mark_disposed(session: Session, scan_id: int, disposition: str, new_path: str | None) -> None:
    """Record what was done with the file (kept, moved, deleted, missing, replaced,
    refused); ``new_path`` as ``os`` functions give it (stored as db/paths.py says). The
    status does not change."""
    text, raw = paths.ledger_path(new_path) if new_path is not None else (None, None)
    session.execute(
        update(Scan)
        .where(Scan.id == scan_id)
        .values(
            disposition=disposition,
            disposed_path=text,
            disposed_path_bytes=raw,
            disposed_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )

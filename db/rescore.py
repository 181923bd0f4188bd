"""Re-scoring with a new model version: which scans of a period have no score for that
version. Putting them back to ``queued`` (:func:`db.ledger.rescore_requeue`) and letting a
worker whose model already scored a scan write that outcome again without a second score
(:func:`db.ledger.restore_scored`) are status moves, and live with the others in
:mod:`db.ledger.transitions`; they, and :func:`db.ledger.file_location`, are re-exported
here for the callers that still reach them as ``rescore.<name>``.

The scores of earlier versions are never touched: ``scan_scores`` keeps one row per scan
and version. Every function takes an open session and never commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.ledger import file_location, has_score, rescore_requeue, restore_scored
from db.models import SCORED, TERMINAL, Scan
from worker.errors import ConfigError

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
    naive scanner-local time for ``acquired``. ConfigError when no status is terminal."""
    wanted = [s for s in statuses if s in TERMINAL]
    if not wanted:
        raise ConfigError(
            f"statuses {list(statuses)!r}: expected some of {', '.join(TERMINAL)}",
            setting="statuses",
        )
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

"""The reconciler: finds scans that look lost and sends them again.

A scan can be stranded two ways: ``queued`` while its message vanished (the broker
restarted empty), or ``processing`` while the process scoring it died (its heartbeat
stopped, or it has held the scan longer than ``USQA_STUCK_SECONDS``). The reconciler puts
those back to ``queued`` and sends their ids again; one that has used up its attempts ends
``failed``. Claims are atomic, so a scan that was not lost after all is not scored twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import db
from db import ledger
from db.models import PROCESSING
from worker.logs import log_outcome
from worker.ops import metrics

__all__ = ["reconcile"]

log = logging.getLogger(__name__)


def reconcile(
    settings: Any,
    send: Callable[[list[int]], None],
    *,
    transport_empty: bool = False,
    limit: int = 1000,
) -> int:
    """One pass: re-queue and re-send lost scans, fail those out of attempts. Returns how
    many were re-sent. Raises TransientError when the database is unavailable.

    ``transport_empty``: the caller has checked that the queue holds no message (the broker
    restarted empty, or the in-process runner is idle), so a scan ``queued`` for longer than
    a short grace is lost; otherwise only after USQA_STUCK_SECONDS (it may be waiting its
    turn behind a backlog)."""
    queued_wait = settings.lost_grace_seconds if transport_empty else settings.stuck_seconds
    with db.session_scope(settings.database_url) as session:
        now = ledger.db_now(session)  # every side stamps and compares with this one clock
        stuck = ledger.stuck_scans(
            session,
            queued_before=ledger.age_cutoff(queued_wait, now),
            stale_before=ledger.age_cutoff(settings.stuck_seconds, now),
            dead_before=ledger.age_cutoff(settings.dead_after_seconds, now),
            limit=limit,
        )
        again = []
        for scan in stuck:
            if scan.status == PROCESSING and scan.attempts >= settings.max_attempts:
                last = scan.reason or "the process scoring it stopped before finishing"
                reason = f"gave up after {scan.attempts} attempts; last problem: {last}"
                if ledger.give_up(session, scan, reason, now):
                    log_outcome(log, scan.id, "failed", reason=reason)
                    metrics.scan_finished("failed", reason="attempts", received_at=scan.received_at)
            else:
                again.append(scan)
        ids = ledger.requeue(session, again, now)
    if ids:
        log.warning(
            "re-queued %d scan(s) that looked lost (broker restarted or worker died)", len(ids)
        )
        size = max(1, int(settings.files_per_task))
        for start in range(0, len(ids), size):
            send(ids[start : start + size])
    return len(ids)

"""Claiming a batch's scans in the ledger (the attempt cap is applied here)."""

from __future__ import annotations

from collections.abc import Sequence

import db
from db import ledger
from db.models import FAILED, Scan
from worker.ops import metrics
from worker.scoring.context import ScoringContext
from worker.scoring.outcome_log import log_scan_outcome

__all__ = ["claim_batch"]


def claim_batch(context: ScoringContext, ids: Sequence[int], token: str) -> list[Scan]:
    """Claim the scans; those past the attempt cap are failed on the spot."""
    settings = context.settings
    with db.session_scope(settings.database_url) as session:
        now = ledger.db_now(session)  # the database's clock judges staleness, not ours
        claimed = ledger.claim(
            session,
            ids,
            token=token,
            worker=context.name,
            stale_before=ledger.age_cutoff(settings.stuck_seconds, now),
            dead_before=ledger.age_cutoff(context.dead_after, now),
            now=now,
        )
        usable = []
        for scan in claimed:
            if scan.attempts > settings.max_attempts:
                last = scan.reason or (
                    "the process scoring it stopped before finishing (killed or crashed)"
                )
                reason = f"gave up after {settings.max_attempts} attempts; last problem: {last}"
                ledger.finish(session, scan.id, token, ledger.Outcome(FAILED, reason))
                log_scan_outcome(scan, FAILED, reason=reason)
                metrics.scan_finished(FAILED, reason="attempts", received_at=scan.received_at)
            else:
                usable.append(scan)
    return usable

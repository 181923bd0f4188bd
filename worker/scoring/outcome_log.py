"""The one outcome line per scan (log) and its metrics."""

from __future__ import annotations

import logging
from typing import Any

from db.models import FAILED, SCORED, SKIPPED, Scan
from worker.logs import log_outcome
from worker.ops import metrics
from worker.scoring.context import ScoringContext
from worker.scoring.work import BatchResult, ScanWork

__all__ = ["log_scan_outcome", "report_outcomes"]

log = logging.getLogger(__name__)


def log_scan_outcome(
    scan: Scan, status: str, *, reason: str | None = None, work: ScanWork | None = None
) -> None:
    """The outcome line (:func:`worker.logs.log_outcome`) of a scan scoring finished; a
    scored one names its score, grade, frames, first defect and timings."""
    scored = None
    if status == SCORED and work is not None and work.summary is not None:
        scored = {
            "score": round(float(work.summary.score), 2),
            "grade": work.summary.grade,
            "frames": work.summary.frames_scored,
            "model_version": scan.model_version,
            "decode_ms": round(work.decode_ms, 1),
            "inference_ms": round(work.inference_ms, 1),
            "first_defect": work.summary.first_defect,
            "defects": [d.name for d in work.summary.defects],
        }
    log_outcome(
        log, scan.id, status, reason=reason, file=scan.path, sha256=scan.sha256, scored=scored
    )


def report_outcomes(
    context: ScoringContext, works: list[ScanWork], result: BatchResult, since: dict[int, Any]
) -> None:
    """The outcome log line and metrics of each written work."""
    for work in works:
        status = result.statuses.get(work.scan.id)
        if status in (SCORED, SKIPPED, FAILED):
            work.scan.model_version = context.model_version
            log_scan_outcome(
                work.scan,
                status,
                reason=None if work.outcome is None else work.outcome.reason,
                work=work,
            )
            duplicate = work.outcome is not None and work.outcome.duplicate_of is not None
            metrics.scan_finished(
                status,
                grade=None if work.summary is None else work.summary.grade,
                reason="duplicate" if duplicate else work.reason_class,
                received_at=since[work.scan.id],
            )

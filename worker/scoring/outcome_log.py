"""The one outcome line per scan (log) and its metrics."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from db.models import FAILED, SCORED, SKIPPED, Scan
from dicom_io.messages import shown
from worker.ops import metrics
from worker.scoring.context import ScoringContext
from worker.scoring.work import BatchResult, ScanWork

__all__ = ["log_outcome", "report_outcomes"]

log = logging.getLogger(__name__)


def log_outcome(
    scan: Scan, status: str, *, reason: str | None = None, work: ScanWork | None = None
) -> None:
    extra: dict[str, Any] = {
        "scan_id": scan.id,
        "file": shown(Path(scan.path).name),
        "sha256": scan.sha256[:12],
        "status": status,
    }
    if status == SCORED and work is not None and work.summary is not None:
        extra.update(
            score=round(float(work.summary.score), 2),
            grade=work.summary.grade,
            frames=work.summary.frames_scored,
            model_version=scan.model_version,
            decode_ms=round(work.decode_ms, 1),
            inference_ms=round(work.inference_ms, 1),
            first_defect=work.summary.first_defect,
            defects=[d.name for d in work.summary.defects],
        )
        log.info(
            "scan %d scored %.1f (%s, %d frame%s%s): %s",
            scan.id,
            extra["score"],
            extra["grade"],
            extra["frames"],
            "" if extra["frames"] == 1 else "s",
            f", {extra['first_defect']}" if extra["first_defect"] else "",
            extra["file"],
            extra=extra,
        )
        return
    extra["reason"] = None if reason is None else shown(reason)
    level = logging.WARNING if status == FAILED else logging.INFO
    log.log(level, "scan %d %s: %s", scan.id, status, extra["reason"], extra=extra)


def report_outcomes(
    context: ScoringContext, works: list[ScanWork], result: BatchResult, since: dict[int, Any]
) -> None:
    """The outcome log line and metrics of each written work."""
    for work in works:
        status = result.statuses.get(work.scan.id)
        if status in (SCORED, SKIPPED, FAILED):
            work.scan.model_version = context.model_version
            log_outcome(
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

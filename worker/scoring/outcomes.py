"""Outcome decisions made without the database: a scan's grade (before the write
transaction), whether it duplicates a scan already scored, what a decoder crash means at
the attempt cap."""

from __future__ import annotations

from db import ledger
from db.models import FAILED, SKIPPED, Scan
from worker.errors import InputError
from worker.scoring.context import ScoringContext
from worker.scoring.work import ScanWork

__all__ = ["INTERRUPTED", "attempt_cap_outcome", "duplicate_outcome", "grade_work"]

INTERRUPTED = "the worker stopped before this file was read; it is scored again"


def duplicate_outcome(scan: Scan, original: Scan, what: str) -> ledger.Outcome:
    return ledger.Outcome(
        SKIPPED,
        f"duplicate of scan {original.id} ({original.path}): same {what}, already scored by "
        "this model version",
        duplicate_of=original.id,
    )


def attempt_cap_outcome(work: ScanWork, max_attempts: int) -> ledger.Outcome | None:
    """A scan whose decoder crashed: its ``failed`` outcome at the attempt cap, else None
    (it is released for a retry)."""
    scan = work.scan
    if scan.attempts >= max_attempts:
        return ledger.Outcome(FAILED, f"{work.crashed}; failed after {scan.attempts} attempts")
    return None


def grade_work(context: ScoringContext, work: ScanWork) -> None:
    """The scan's summary (score, grade, defects) on ``work.summary``, or the outcome that
    replaces it on ``work.grade_outcome``: ``skipped`` when the gate says it is not
    ultrasound, ``failed`` when it cannot be graded. Run before the write transaction;
    the outcome applies unless the scan turns out to be a duplicate."""
    indices = [i for i, _ in sorted(work.frame_scores)]
    defect_rows = [list(work.frame_defects[i]) for i in indices if i in work.frame_defects]
    gate = [work.frame_gate[i] for i in indices if i in work.frame_gate]
    try:
        work.summary = context.grading.summarise(
            [s for _, s in sorted(work.frame_scores)],
            defect_rows if len(defect_rows) == len(indices) and defect_rows else None,
            gate if len(gate) == len(indices) and gate else None,
            context.scorer.defect_names,
        )
    except InputError as exc:
        work.grade_outcome = ledger.Outcome(FAILED, f"{work.scan.path}: {exc}")
        return
    if work.summary.skip_reason:
        work.grade_outcome = ledger.Outcome(SKIPPED, work.summary.skip_reason)
        work.reason_class = "not_ultrasound"
        work.summary = None

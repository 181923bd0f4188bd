"""Writing a batch's outcomes: one transaction for header columns, outcomes and scores."""

from __future__ import annotations

import logging
from typing import Any

import db
from db import ledger
from db.models import SCORED
from dicom_io.messages import shown
from model.defects import DEFECTS
from worker.results.destinations import destinations
from worker.scoring.context import ScoringContext
from worker.scoring.outcomes import INTERRUPTED, attempt_cap_outcome, duplicate_outcome
from worker.scoring.work import RETRY, BatchResult, ScanWork

__all__ = ["write_outcomes"]

log = logging.getLogger(__name__)


def write_outcomes(
    context: ScoringContext, works: list[ScanWork], token: str, result: BatchResult
) -> None:
    """One transaction for ``works`` (the batch, or the part of it that finished while a
    slow file still decodes): header columns, then every outcome. The scans to be
    scored are written together (a few statements for all of them); only if that
    meets a conflict (a duplicate scored meanwhile, a claim lost) are they written one by
    one, each in its own savepoint."""
    settings = context.settings
    version = context.model_version
    with db.session_scope(settings.database_url) as session:
        candidates = [
            w for w in works if w.outcome is None and w.crashed is None and not w.interrupted
        ]
        by_sha, by_uid = (
            ledger.known_scores(
                session,
                version,
                {w.scan.sha256 for w in candidates},
                (w.columns.get("sop_instance_uid") for w in candidates),
            )
            if candidates
            else ({}, {})
        )
        ledger.update_columns(session, token, [(w.scan.id, w.columns) for w in works if w.columns])
        to_score: list[ScanWork] = []
        for work in works:
            scan = work.scan
            for key, value in work.columns.items():
                setattr(scan, key, value)
            if work.interrupted:
                if ledger.release(session, [scan.id], token, INTERRUPTED):
                    result.retry.append(scan.id)
                    result.statuses[scan.id] = RETRY
                continue
            if work.crashed is not None and not crash_outcome(
                session, work, token, settings.max_attempts, result
            ):
                continue
            if work.outcome is None and getattr(by_sha.get(scan.sha256), "id", None) == scan.id:
                # re-queued, but this version has scored it already (a worker still on the
                # old model after `usqa rescore`): its outcome stands, no second score
                work.summary = None  # the score that stands is the earlier one
                if ledger.restore_scored(session, scan.id, token, version):
                    work.outcome = ledger.Outcome(
                        SCORED, f"already scored by model {version}; that score is kept"
                    )
                    result.statuses[scan.id] = SCORED
                else:
                    result.not_claimed.append(scan.id)
                continue
            if work.outcome is None:
                uid = work.columns.get("sop_instance_uid")
                original = by_sha.get(scan.sha256)
                what = "content"
                if (original is None or original.id == scan.id) and uid:
                    original, what = by_uid.get(uid), "SOP instance"
                if original is not None and original.id != scan.id:
                    work.outcome = duplicate_outcome(scan, original, what)
                    work.summary = None
            if work.outcome is None:
                work.outcome = work.grade_outcome
            if work.outcome is None:
                to_score.append(work)  # later copies in this batch are its duplicates
                by_sha.setdefault(scan.sha256, scan)
                if scan.sop_instance_uid:
                    by_uid.setdefault(scan.sop_instance_uid, scan)
                continue
            if ledger.finish(session, scan.id, token, work.outcome, model_version=version):
                result.statuses[scan.id] = work.outcome.status
            else:
                result.not_claimed.append(scan.id)
        write_scores(context, session, to_score, token, result)
        queue_reports(context, session, to_score, result)


def queue_reports(
    context: ScoringContext, session: db.Session, works: list[ScanWork], result: BatchResult
) -> None:
    """Queue the structured report of each DICOM scan just scored, for each results
    destination (USQA_SEND_RESULTS_TO, USQA_RESULTS_DIR), in the transaction of its score:
    the report is recorded exactly when the score is (worker/results/outbox.py)."""
    targets = destinations(context.settings)
    scored = [w.scan.id for w in works if result.statuses.get(w.scan.id) == SCORED]
    if targets and scored:
        ledger.queue_results(session, scored, context.model_version, targets)


def crash_outcome(
    session: db.Session, work: ScanWork, token: str, max_attempts: int, result: BatchResult
) -> bool:
    """A scan whose decoder crashed: released for a retry (False: nothing more to write)
    or, at the attempt cap, given a ``failed`` outcome to write (True)."""
    scan = work.scan
    capped = attempt_cap_outcome(work, max_attempts)
    if capped is not None:
        work.outcome = capped
        return True
    reason = f"retrying (attempt {scan.attempts} of {max_attempts}): {work.crashed}"
    if ledger.release(session, [scan.id], token, reason):
        result.retry.append(scan.id)
        result.statuses[scan.id] = RETRY
        log.warning(
            "scan %d will be retried: %s",
            scan.id,
            shown(work.crashed or ""),
            extra={"scan_id": scan.id, "status": RETRY},
        )
    return False


def score_entry(work: ScanWork) -> ledger.ScoreEntry:
    return ledger.ScoreEntry(
        scan=work.scan,
        summary=work.summary,
        frame_scores=sorted(work.frame_scores),
        decode_ms=round(work.decode_ms, 2),
        inference_ms=round(work.inference_ms, 2),
    )


def write_scores(
    context: ScoringContext,
    session: db.Session,
    works: list[ScanWork],
    token: str,
    result: BatchResult,
) -> None:
    """Write the scores of ``works``: all at once, or one by one after a conflict."""
    if not works:
        return
    version = context.model_version
    aggregate = context.settings.aggregate
    entries = [score_entry(w) for w in works]
    written = ledger.try_write_scores(session, token, entries, version, aggregate, None, DEFECTS)
    if written:
        for work in works:
            result.statuses[work.scan.id] = SCORED
        return
    frame_rows: list[dict[str, Any]] = []
    for work in works:
        write_one(session, work, token, version, aggregate, frame_rows, result)
    ledger.insert_frame_scores(session, frame_rows)


def write_one(
    session: db.Session,
    work: ScanWork,
    token: str,
    version: str,
    aggregate: str,
    frame_rows: list[dict[str, Any]],
    result: BatchResult,
) -> None:
    """Score one scan in its own savepoint; a duplicate becomes ``skipped``."""
    scan = work.scan
    outcome = ledger.try_write_score(
        session,
        score_entry(work),
        token,
        model_version=version,
        aggregate=aggregate,
        frame_rows=frame_rows,
        vocabulary=DEFECTS,
    )
    if outcome.duplicate is not None:  # scored meanwhile by another worker
        work.outcome = duplicate_outcome(scan, *outcome.duplicate)
        if ledger.finish(session, scan.id, token, work.outcome, model_version=version):
            result.statuses[scan.id] = work.outcome.status
        else:
            result.not_claimed.append(scan.id)
        return
    written = outcome.written
    if written:
        result.statuses[scan.id] = SCORED
    else:
        result.not_claimed.append(scan.id)

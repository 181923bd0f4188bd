"""``process_scans``: one batch, top-down (see :mod:`worker.scoring`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from worker.ops import metrics
from worker.scoring.claim import claim_batch
from worker.scoring.context import ScoringContext
from worker.scoring.inference import InferenceQueue
from worker.scoring.outcome_log import report_outcomes
from worker.scoring.outcomes import grade_work
from worker.scoring.read import read_and_score
from worker.scoring.work import RETRY, BatchResult, ScanWork
from worker.scoring.write import write_outcomes

__all__ = ["process_scans"]


def process_scans(
    scan_ids: Sequence[int],
    context: ScoringContext,
    *,
    token: str | None = None,
    reraise: tuple[type[BaseException], ...] = (),
) -> BatchResult:
    """Score a batch of scans by id and write one outcome per scan.

    ``token`` identifies this piece of work: a retry of the same batch passes the same
    token and takes back its own claims. ``reraise`` lists extra exception types that must
    abort the batch instead of failing a scan (Celery's soft time limit).

    Raises :class:`~worker.errors.TransientError` (database unavailable) or
    :class:`~worker.errors.ModelError`: retry the batch later with the same token.
    """
    token = token or uuid.uuid4().hex
    result = BatchResult(token=token)
    ids = [int(i) for i in scan_ids]
    if not ids:
        return result
    context.load()  # before claiming: a model that cannot load must not burn attempts
    metrics.model_loaded(context.model_version)
    claimed = claim_batch(context, ids, token)
    claimed_ids = {s.id for s in claimed}
    result.not_claimed = [i for i in ids if i not in claimed_ids]
    if not claimed:
        return result
    works = [ScanWork(scan) for scan in claimed]
    # scans with an earlier outcome were re-queued by `usqa rescore`: their latency counts
    # from then, not from when the file arrived weeks ago
    since = {s.id: s.queued_at if s.model_version else s.received_at for s in claimed}
    inference = InferenceQueue(context, reraise)
    written: set[int] = set()

    def write(done: list[ScanWork]) -> None:
        if not done:
            return
        for work in done:  # grading needs no database: before the transaction
            if work.outcome is None and work.crashed is None and not work.interrupted:
                grade_work(context, work)
        write_outcomes(context, done, token, result)
        report_outcomes(context, done, result, since)
        written.update(id(w) for w in done)

    read_and_score(works, context, inference, reraise, write)
    write([w for w in works if id(w) not in written])
    context.scans_done += sum(1 for s in result.statuses.values() if s != RETRY)
    return result

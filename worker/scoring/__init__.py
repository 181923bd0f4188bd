"""The scoring path: one batch of scan ids from the ledger to their rows, read top-down.

:func:`process_scans` (batch.py) is the whole path, used by the embedded runner and the
Celery task alike:

1. **claim** (claim.py): the scans are claimed in the ledger with the batch's token; one
   past ``USQA_MAX_ATTEMPTS`` is failed on the spot.
2. **read** (read.py, readahead.py): each file is checked (still the one received), its
   header read and its frames decoded in a decoder child, in read-ahead lanes; a file stuck
   for 5 s hands the rest of the batch to a spare decoder.
3. **score** (inference.py): frames from all the batch's files go to the model's streams in
   batches as they arrive.
4. **decide** (outcomes.py): grading, the not-ultrasound gate, duplicates and the attempt
   cap, before any transaction.
5. **write** (write.py): one transaction for the batch (or for what is finished while a
   slow file still decodes): header columns, outcomes, scores.
6. **report** (outcome_log.py): one log line and the metrics per scan.

The per-process context (model, decoder children, heartbeat) is :class:`ScoringContext`
(context.py); what is retried, how often and after how long is :mod:`worker.scoring.retry`.
The error boundary: a problem with one file ends that scan (``failed``/``skipped`` with the
reason) and never the others; a decoder crash releases the scan for a later retry until
the attempt cap; an unavailable database or a model that cannot load raises
(:class:`~worker.errors.TransientError`/:class:`~worker.errors.ModelError`) and the caller
retries the whole batch with the same claim token.
"""

from worker.scoring.batch import process_scans
from worker.scoring.context import ScoringContext
from worker.scoring.work import RETRY, BatchResult

__all__ = ["RETRY", "BatchResult", "ScoringContext", "process_scans"]

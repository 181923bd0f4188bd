"""The one retry policy, for the embedded runner and the Celery task alike.

What went wrong decides what is retried, after how long, and for how long
(docs/operations.md has this table for operators)::

    what went wrong                          retried      backoff (x2 a try, +-20%)   until
    database or broker unavailable           the batch    1 s .. 60 s                 it answers
    the model failed to load                 the batch    10 s .. 300 s               it loads
    the batch ran past USQA_TASK_TIME_LIMIT  the batch    1 s .. 60 s                 attempt cap
    an unexpected exception (a bug)          the batch    1 s .. 60 s                 attempt cap
    the decoder process crashed              that scan    2 s .. 60 s                 attempt cap
    the file's storage did not answer        that scan    2 s .. 60 s                 attempt cap
    a bad file, a decode timeout             no           -                           failed now

"The batch": :func:`batch_retry` gives the delay and the caller queues the same scan ids
again with the same claim token (the runner's heap, Celery's ``retry``). Only a claim
counts an attempt (USQA_MAX_ATTEMPTS, kept in the ledger): an unavailable database or a
model that cannot load retries before any claim, so it uses none and is retried until it
is fixed; the other rows each use one, and a scan past the cap ends ``failed`` with the
last problem as its reason. "That scan": :func:`worker.scoring.process_scans` releases the
scan to ``queued`` and returns it in ``BatchResult.retry``; the caller queues it again
after :func:`scan_retry_delay`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

from dicom_io.messages import first_line
from worker.errors import ModelError, TransientError

__all__ = ["Backoff", "BatchRetry", "batch_retry", "release_after_error", "scan_retry_delay"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: ``base`` x 2**tries, at most ``cap`` (+-20%)."""

    base: float
    cap: float

    def delay(self, tries: int) -> float:
        return min(self.cap, self.base * 2.0 ** max(0, min(tries, 30))) * random.uniform(0.8, 1.2)


SERVER = Backoff(1.0, 60.0)
MODEL = Backoff(10.0, 300.0)
SCAN = Backoff(2.0, 60.0)


@dataclass(frozen=True)
class BatchRetry:
    """How a batch that raised is retried."""

    rule: str  # "transient", "model", "time_limit", "unexpected"
    delay: float
    release: bool  # put the claims back to queued first, with the error as the reason


def batch_retry(
    exc: BaseException, tries: int, time_limit: tuple[type[BaseException], ...] = ()
) -> BatchRetry:
    """The retry of a batch that raised ``exc`` on try ``tries`` (0 = the first)."""
    if isinstance(exc, TransientError):
        return BatchRetry("transient", SERVER.delay(tries), release=False)
    if isinstance(exc, ModelError):
        return BatchRetry("model", MODEL.delay(tries), release=False)
    if time_limit and isinstance(exc, time_limit):
        return BatchRetry("time_limit", SERVER.delay(tries), release=True)
    return BatchRetry("unexpected", SERVER.delay(tries), release=True)


def scan_retry_delay(tries: int) -> float:
    """When scans released for a retry (a crashed decoder, a stalled share) are queued."""
    return SCAN.delay(tries)


def release_after_error(
    database_url: str, scan_ids: Sequence[int], token: str, exc: BaseException
) -> None:
    """Put the scans of a batch that raised back to ``queued``, with the error as their
    reason (best effort: if the database is down too, the retry takes back its claims)."""
    import db
    from db import ledger

    reason = f"retrying after an unexpected error ({first_line(exc, limit=300)})"
    try:
        with db.session_scope(database_url) as session:
            ledger.release(session, scan_ids, token, reason)
    except Exception as again:
        log.warning("could not release the batch's scans: %s", first_line(again, limit=300))


def log_retry(retry: BatchRetry, count: int, exc: BaseException) -> None:
    """One log line per retried batch (with the traceback for a bug)."""
    what = {
        "transient": "a server is unavailable",
        "model": "the model cannot be loaded",
        "time_limit": "it ran past USQA_TASK_TIME_LIMIT",
        "unexpected": "of an unexpected error",
    }[retry.rule]
    message = "batch of %d scan(s) will be retried in %.0f s because %s: %s"
    if retry.rule == "unexpected":
        log.error(message, count, retry.delay, what, first_line(exc, limit=300), exc_info=exc)
    else:
        log.warning(message, count, retry.delay, what, first_line(exc, limit=300))

"""The embedded runner: scores batches of scan ids in threads of the same process (the
``usqa run`` default: no broker). It calls the same :func:`worker.scoring.process_scans` as
the Celery workers, with the same retry policy (:mod:`worker.scoring.retry`)."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import uuid

from worker.scoring import BatchResult, ScoringContext, process_scans, retry

__all__ = ["Runner", "backoff_seconds"]

log = logging.getLogger(__name__)

RUNNER_BATCH_FILES = 64  # most files `usqa run` merges into one batch (unless FILES_PER_TASK)


def backoff_seconds(tries: int, base: float = 1.0, cap: float = 60.0) -> float:
    """Exponential backoff with jitter: about base x 2**tries, at most ``cap``."""
    return retry.Backoff(base, cap).delay(tries)


class Runner:
    """A queue of batches and threads that score them in order of due time: one per
    decoder of the pipeline, so one batch's start and end (its first file decoding, its
    last frames, its database writes) overlap another batch's scoring.

    :meth:`submit` is thread-safe. :meth:`stop` lets the batches in hand finish, then ends
    the threads; what is still queued stays ``queued`` in the ledger for the next start.
    """

    def __init__(self, pipeline: ScoringContext) -> None:
        self.pipeline = pipeline
        # one process, no other worker to share with: merge what waits into large batches,
        # since each batch boundary drains the read-ahead and the inference streams
        self.size = max(RUNNER_BATCH_FILES, pipeline.settings.files_per_task)
        self.workers = len(pipeline.decoders)
        self._heap: list[tuple[float, int, list[int], str | None, int]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stop = False
        self._started: dict[int, float] = {}  # thread id -> wall-clock start of its batch
        self._threads: list[threading.Thread] = []
        self.batches = 0
        self.failed = 0

    @property
    def busy_since(self) -> float | None:
        """Wall-clock start of the oldest batch in hand (health), None when idle."""
        with self._cond:
            return min(self._started.values(), default=None)

    def submit(
        self, ids: list[int], delay: float = 0.0, token: str | None = None, tries: int = 0
    ) -> None:
        """Queue scan ids (a retry keeps its ``token`` and counts its ``tries``)."""
        if not ids:
            return
        with self._cond:
            due = time.monotonic() + delay
            heapq.heappush(self._heap, (due, next(self._seq), list(ids), token, tries))
            self._cond.notify()

    @property
    def idle(self) -> bool:
        """Nothing running and nothing waiting (retries scheduled for later count)."""
        with self._cond:
            return not self._started and not self._heap

    def start(self) -> None:
        for i in range(self.workers):
            thread = threading.Thread(target=self._loop, name=f"usqa-runner-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float | None = None) -> None:
        """Finish the batches in hand, then stop (a file stuck in its decoder is given up:
        its scan goes back to ``queued`` for the next start, see :mod:`worker.scoring`)."""
        self.pipeline.stopping.set()
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _next(self) -> tuple[list[int], str | None, int] | None:
        """Wait for due work; merge fresh batches up to :attr:`size` files."""
        with self._cond:
            while not self._stop:
                now = time.monotonic()
                if self._heap and self._heap[0][0] <= now:
                    _, _, ids, token, tries = heapq.heappop(self._heap)
                    if token is None:  # fresh work: fill the batch from other due fresh work
                        while (
                            len(ids) < self.size
                            and self._heap
                            and self._heap[0][0] <= now
                            and self._heap[0][3] is None
                            and len(ids) + len(self._heap[0][2]) <= self.size
                        ):
                            ids.extend(heapq.heappop(self._heap)[2])
                    self._started[threading.get_ident()] = time.time()
                    return ids, token, tries
                wait = (self._heap[0][0] - now) if self._heap else None
                self._cond.wait(wait)
            return None

    def _loop(self) -> None:
        while True:
            job = self._next()
            if job is None:
                return
            ids, token, tries = job
            try:
                self._run(ids, token, tries)
            finally:
                with self._cond:
                    self._started.pop(threading.get_ident(), None)
                    self._cond.notify_all()

    def _run(self, ids: list[int], token: str | None, tries: int) -> None:
        token = token or uuid.uuid4().hex  # kept for retries: they take back their own claims
        try:
            result: BatchResult = process_scans(ids, self.pipeline, token=token)
        except Exception as exc:  # the policy decides; the runner stays alive
            again = retry.batch_retry(exc, tries)
            retry.log_retry(again, len(ids), exc)
            if again.release:
                retry.release_after_error(self.pipeline.settings.database_url, ids, token, exc)
            self.submit(ids, delay=again.delay, token=token, tries=tries + 1)
            return
        with self._cond:
            self.batches += 1
            self.failed += result.failed
        if result.retry:
            self.submit(result.retry, delay=retry.scan_retry_delay(tries))

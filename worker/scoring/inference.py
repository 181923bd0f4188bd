"""Inference scheduling: the frames of a batch's scans, scored in stream batches as they
arrive (see :class:`InferenceQueue`)."""

from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from db import ledger
from db.models import FAILED
from dicom_io.messages import first_line
from worker.errors import ModelError, TransientError
from worker.ops import metrics
from worker.scoring.context import ScoringContext
from worker.scoring.work import ScanWork

if TYPE_CHECKING:
    from model.scorer import Assessment

__all__ = ["InferenceQueue", "StreamBatch"]

log = logging.getLogger(__name__)


class InferenceQueue:
    """Frames from several scans, scored in batches of ``batch_size`` as they arrive (so
    memory stays bounded however long a cine is). Up to ``scorer.streams`` batches run at
    once in the scorer's stream threads while this thread goes on reading; their scores are
    applied here, in submission order, so a :class:`ScanWork` is only changed by this thread."""

    def __init__(self, context: ScoringContext, reraise: tuple[type[BaseException], ...]) -> None:
        self.context = context
        self.reraise = reraise
        self.size = max(1, context.settings.batch_size)
        self.streams = max(1, getattr(context.scorer, "streams", 1))
        self.pending: list[tuple[ScanWork, int, np.ndarray]] = []
        self.running: deque[StreamBatch] = deque()

    @property
    def idle_stream(self) -> bool:
        """Whether a stream is free to take a batch now: one of ours is, and the scorer
        (shared by every batch this process scores at once) has one with nothing to do."""
        self._reap()
        idle = getattr(self.context.scorer, "idle_streams", None)
        return len(self.running) < self.streams and (idle is None or idle > 0)

    def add(self, work: ScanWork, index: int, frame: np.ndarray) -> None:
        self.pending.append((work, index, frame))
        work.frames += 1
        if len(self.pending) >= self.size:
            self.flush()

    def drop(self, work: ScanWork) -> None:
        self.pending = [p for p in self.pending if p[0] is not work]

    def holds(self) -> set[int]:
        """``id()`` of the works with frames waiting or being scored."""
        self._reap()
        entries = [e for batch in self.running for e in batch.entries] + self.pending
        return {id(work) for work, _, _ in entries}

    def flush(self) -> None:
        """Start scoring what is pending (waiting for a free stream if all are busy)."""
        entries, self.pending = self.pending, []
        alive = [
            e
            for e in entries
            if e[0].outcome is None and e[0].crashed is None and not e[0].interrupted
        ]
        if not alive:
            return
        while len(self.running) >= self.streams:
            self._finish(self.running.popleft())
        frames = [frame for _, _, frame in alive]
        self.running.append(StreamBatch(alive, self.context.scorer.submit(frames)))

    def finish(self) -> None:
        """Score what is pending and wait for every batch."""
        self.flush()
        while self.running:
            self._finish(self.running.popleft())

    def _reap(self) -> None:
        while self.running and self.running[0].future.done():
            self._finish(self.running.popleft())

    def _finish(self, batch: StreamBatch) -> None:
        try:
            result = batch.future.result()
        except Exception as exc:
            if isinstance(exc, (TransientError, ModelError, *self.reraise)):
                raise
            self._failed(batch.entries, exc)
            return
        self._record_scores(batch.entries, result, time.perf_counter() - batch.started)

    def _record_scores(
        self, entries: list[tuple[ScanWork, int, np.ndarray]], result: Assessment, seconds: float
    ) -> None:
        metrics.inference_done(seconds, len(entries))
        if len(result) != len(entries):
            raise ModelError(
                f"the scorer returned {len(result)} scores for {len(entries)} frames; "
                "the model package is inconsistent"
            )
        share = seconds * 1000.0 / len(entries)
        for row, (work, index, _) in enumerate(entries):
            work.frame_scores.append((index, float(result.scores[row])))
            if result.defects is not None:
                work.frame_defects[index] = result.defects[row]
            if result.not_ultrasound is not None:
                work.frame_gate[index] = float(result.not_ultrasound[row])
            work.inference_ms += share

    def _failed(self, entries: list[tuple[ScanWork, int, np.ndarray]], exc: Exception) -> None:
        """A batch could not be scored: score each scan's frames alone to find the one
        that breaks it; that scan fails, the others keep their scores."""
        owners = list(dict.fromkeys(id(w) for w, _, _ in entries))
        if len(owners) > 1:
            for owner in owners:
                mine = [e for e in entries if id(e[0]) == owner]
                started = time.perf_counter()
                try:
                    result = self.context.scorer.assess([f for _, _, f in mine])
                except Exception as again:
                    if isinstance(again, (TransientError, ModelError, *self.reraise)):
                        raise
                    self._failed(mine, again)
                    continue
                self._record_scores(mine, result, time.perf_counter() - started)
            return
        work = entries[0][0]
        log.debug("scoring scan %d failed", work.scan.id, exc_info=exc)
        work.reason_class = "scoring"
        work.outcome = ledger.Outcome(
            FAILED,
            f"{work.scan.path}: its frames could not be scored ({first_line(exc, kind=False)})",
        )


@dataclass
class StreamBatch:
    """Frames handed to a stream, and the future of their scores."""

    entries: list[tuple[ScanWork, int, np.ndarray]]
    future: Future[Assessment]
    started: float = field(default_factory=time.perf_counter)

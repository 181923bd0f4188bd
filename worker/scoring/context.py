"""What one scoring process holds: its settings, the model (loaded once), the decoder child
processes and a heartbeat in the ``workers`` table. Built once per process (after a fork)."""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import db
from db import ledger
from model.defects import DEFECTS
from worker.decoding import Decoder
from worker.errors import UsqaError
from worker.logs import Outage
from worker.settings import Settings

if TYPE_CHECKING:
    from model import Grading, Scorer

__all__ = ["MAX_SPARE_DECODERS", "ScoringContext", "StopFlag"]

log = logging.getLogger(__name__)


class StopFlag(Protocol):
    """A threading or multiprocessing event."""

    def is_set(self) -> bool: ...

    def set(self) -> None: ...


MAX_SPARE_DECODERS = 3  # per process: so many files may hang at once, the rest still flows


class ScoringContext:
    """The per-process scoring context used by :func:`worker.scoring.process_scans`.

    ``mode`` is ``embedded`` (``usqa run``) or ``celery`` (a ``usqa worker`` pool process).
    Nothing heavy happens in the constructor: the model loads on :meth:`load` or first use
    (or pass an already loaded ``scorer``).
    """

    def __init__(
        self,
        settings: Settings,
        mode: str = "embedded",
        scorer: Scorer | None = None,
        batches: int = 1,
    ) -> None:
        self.settings = settings
        self.mode = mode
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self.name = f"{self.hostname}:{self.pid}"
        # one decoder child per batch that may be in hand at once (``batches``)
        self.decoders = [Decoder.from_settings(settings) for _ in range(max(1, batches))]
        self._free: queue.SimpleQueue[Decoder] = queue.SimpleQueue()
        for decoder in self.decoders:
            self._free.put(decoder)
        # started only when a file stalls a batch (see worker.scoring.readahead), kept for reuse
        self._spares: list[Decoder] = []
        self._spares_free: list[Decoder] = []
        self._preset: dict[str, Any] | None = None
        self.scans_done = 0
        # set when the process is asked to stop: a batch then gives up a file stuck in its
        # decoder instead of waiting for it (a multiprocessing.Event in a Celery pool)
        self.stopping: StopFlag = threading.Event()
        self._scorer: Scorer | None = scorer  # a loaded one may be shared (tests, benchmarks)
        self._grading: Grading | None = None
        self._registered = False
        self._stop = threading.Event()
        self._beat_thread: threading.Thread | None = None
        self._beat_outage = Outage(log)
        self._lock = threading.Lock()

    # --- the model ------------------------------------------------------------------

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            self.load()
        assert self._scorer is not None
        return self._scorer

    @property
    def grading(self) -> Grading:
        if self._grading is None:
            from model import Grading

            self._grading = Grading.from_settings(self.settings)
        return self._grading

    @property
    def model_version(self) -> str:
        return self.scorer.version

    def load(self) -> None:
        """Load the model (once) and register its version; the process's ``workers`` row
        then names the model, which tells operators (and the benchmark) that it is ready to
        score. Raises ModelError/ConfigError."""
        with self._lock:
            if self._scorer is None:
                from model import Scorer

                self._scorer = Scorer.from_settings(self.settings)
        # the decoder child hands over model-ready images (grey, model size), not frames
        preset = getattr(getattr(self._scorer, "checkpoint", None), "preprocess", None)
        self._preset = None if preset is None else preset.to_dict()
        for decoder in self.decoders + self._spares:
            decoder.set_preprocess(self._preset)
        first = not self._registered
        self.register_model()
        if first:
            try:
                self.beat()
            except UsqaError as exc:  # the heartbeat thread records it on its next beat
                log.warning("heartbeat not recorded: %s", exc)

    def register_model(self) -> None:
        """Make sure ``model_versions`` knows this process's model (once per process)."""
        if self._registered:
            return
        scorer = self.scorer
        checkpoint = getattr(scorer, "checkpoint", None)
        meta: dict[str, Any] = getattr(checkpoint, "meta", None) or {}
        weights = self.settings.weights
        with db.session_scope(self.settings.database_url) as session:
            ledger.ensure_model_version(
                session,
                scorer.version,
                weights_sha256=getattr(checkpoint, "sha256", None),
                architecture=str(meta.get("arch")) if meta.get("arch") else None,
                weights_name=weights.name if weights is not None else "shipped",
                defect_names=list(getattr(scorer, "defect_names", ())) or None,
                vocabulary=DEFECTS,
            )
        self._registered = True

    # --- heartbeat ------------------------------------------------------------------

    @property
    def dead_after(self) -> float:
        """Seconds of silence after which a scoring process is presumed dead."""
        return self.settings.dead_after_seconds

    def beat(self, stopped: bool = False) -> None:
        """Record that this process is alive (or, with ``stopped``, that it has ended)."""
        with db.session_scope(self.settings.database_url) as session:
            ledger.heartbeat(
                session,
                name=self.name,
                hostname=self.hostname,
                pid=self.pid,
                mode=self.mode,
                model_version=self._scorer.version if self._scorer is not None else None,
                scans_done=self.scans_done,
                stopped=stopped,
            )

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_seconds):
            try:
                self.beat()
                self._beat_outage.recovered("heartbeat restored")
            except UsqaError as exc:
                self._beat_outage.failed("heartbeat not recorded: %s", exc)
            except Exception:  # the heartbeat must never die
                log.exception("heartbeat failed")

    def start(self) -> None:
        """First heartbeat now, then one every USQA_HEARTBEAT_SECONDS in a thread; start
        the decoder child so the first file does not wait for it."""
        self.beat()
        for decoder in self.decoders:
            decoder.start()
        if self._beat_thread is None:
            self._beat_thread = threading.Thread(
                target=self._beat_loop, name="usqa-heartbeat", daemon=True
            )
            self._beat_thread.start()

    def close(self) -> None:
        """Stop the heartbeat, mark this process stopped, stop the decoder and the
        inference streams."""
        self._stop.set()
        if self._beat_thread is not None:
            self._beat_thread.join(timeout=5)
            self._beat_thread = None
        try:
            self.beat(stopped=True)
        except UsqaError as exc:
            log.warning("could not record that this worker stopped: %s", exc)
        for decoder in self.decoders + self._spares:
            decoder.close()
        if self._scorer is not None:
            self._scorer.close()

    def spare_decoder(self) -> Decoder | None:
        """A spare decoder child for the rest of a batch that a slow file holds up, or
        None when ``MAX_SPARE_DECODERS`` are in use. Give it back with
        :meth:`return_spare`."""
        with self._lock:
            if self._spares_free:
                return self._spares_free.pop()
            if len(self._spares) >= MAX_SPARE_DECODERS:
                return None
            decoder = Decoder.from_settings(self.settings)
            decoder.set_preprocess(self._preset)
            self._spares.append(decoder)
            return decoder

    def return_spare(self, decoder: Decoder) -> None:
        with self._lock:
            self._spares_free.append(decoder)

    @contextmanager
    def decoder(self) -> Iterator[Decoder]:
        """A decoder child for one batch, to itself until the block ends (waits while all
        are in use)."""
        decoder = self._free.get()
        try:
            yield decoder
        finally:
            self._free.put(decoder)

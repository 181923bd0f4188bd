"""The ingester's loop: its lifecycle (watch, stop) and one tick's schedule: note events,
walk a slice (finding.py), take stable files (candidates.py), record hashed ones
(recording.py), send, dispose (disposal.py) and reconcile. See the package docstring for
the rules and limits.py for the bounds."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from db import ledger
from dicom_io.messages import printable
from worker.errors import ConfigError, TransientError
from worker.ingest import limits
from worker.ingest.admission import Folder
from worker.ingest.batcher import Batcher
from worker.ingest.bounded import Bounded
from worker.ingest.candidates import Candidate, Candidates
from worker.ingest.disposal import dispose_scored
from worker.ingest.events import Events, event_filter, inotify_observer
from worker.ingest.finding import Finder
from worker.ingest.reconciler import reconcile
from worker.ingest.recording import Recorder
from worker.logs import Outage

__all__ = ["Ingester"]

log = logging.getLogger(__name__)

_BURST_SECONDS = 0.02  # after the first event, how long to gather the events that follow it


class Ingester:
    """Watches ``root`` and sends the ids of newly recorded scans to ``send``.

    Call :meth:`run` with a stop event (it returns when the event is set), or drive it
    with :meth:`start`, :meth:`tick` and :meth:`close`. ``reconcile_send`` receives the
    ids the reconciler re-queues (None: no reconciler in this process); ``transport_empty``
    tells it whether the queue is empty (lost scans are then re-sent sooner). ``linger``
    and ``batch`` override ``USQA_LINGER_SECONDS`` and ``USQA_FILES_PER_TASK`` (for a
    receiver that batches by itself).
    """

    def __init__(
        self,
        root: Path,
        settings: Any,
        send: Callable[[list[int]], None],
        *,
        reconcile_send: Callable[[list[int]], None] | None = None,
        transport_empty: Callable[[], bool] | None = None,
        linger: float | None = None,
        batch: int | None = None,
    ) -> None:
        root = Path(root).expanduser().absolute()
        if root.exists() and not root.is_dir():
            raise ConfigError(f"{root}: the drop folder is a file, not a folder")
        root.mkdir(parents=True, exist_ok=True)
        self.root = os.path.normpath(str(root))
        self.folder = Folder(self.root)
        self.real_root = self.folder.real_root
        self.settings = settings
        self.batcher = Batcher(
            send,
            settings.files_per_task if batch is None else batch,
            settings.linger_seconds if linger is None else linger,
        )
        self.reconcile_send = reconcile_send
        self.transport_empty = transport_empty
        self.tick_seconds = min(0.25, max(0.05, settings.stable_seconds / 4))
        # polling: no observer; the walk, repeated this often, is the poll
        self.poll_seconds = max(0.5, settings.stable_seconds / 2)
        self._events = Events()
        self.candidates = Candidates(self.folder, settings)
        self.finder = Finder(self.root, self.folder, settings, self.candidates, self.poll_seconds)
        self.recorder = Recorder(
            settings, self.candidates, self.batcher, self._see, self._events.wake
        )
        self._observer: Any = None
        self._next_reconcile = 0.0
        self._next_disposal = 0.0
        self._database = Outage(log)
        self._unexpected: str | None = None

    # --- what it holds ----------------------------------------------------------------

    @property
    def pending(self) -> dict[str, Candidate]:
        """Files seen but not recorded yet."""
        return self.candidates.pending

    @property
    def known(self) -> Bounded[str, tuple[int, int]]:
        """Files remembered as recorded (path: size and mtime)."""
        return self.candidates.known

    @property
    def refused(self) -> Bounded[str, tuple[str, tuple[int, int, int] | None]]:
        """Paths refused (path: reason, and the file's signature when it is retried)."""
        return self.candidates.refused

    @property
    def recorded(self) -> int:
        """Files recorded in the ledger by this ingester."""
        return self.recorder.recorded

    @property
    def _next_rescan(self) -> float:
        return self.finder.next_rescan

    @_next_rescan.setter
    def _next_rescan(self, when: float) -> None:
        self.finder.next_rescan = when

    @property
    def _passes(self) -> int:
        return self.finder.passes

    @property
    def idle(self) -> bool:
        """Nothing seen that is not recorded and sent yet."""
        return (
            not self.pending
            and not self.recorder.hashed
            and self.batcher.empty
            and not self.finder.walks
            and self.finder.passes > 0
        )

    @property
    def ledger_root(self) -> str:
        """The drop folder as the ledger's ``scans.path`` values begin (db/paths.py)."""
        return ledger.paths_text(self.root)

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start watching (inotify; none when polling); the first tick walks the folder."""
        if not self.settings.polling:
            observer = inotify_observer()
            observer.schedule(self._events, self.root, recursive=True, event_filter=event_filter())
            observer.daemon = True
            observer.start()
            self._observer = observer
        log.info(
            "watching %s (%s; files taken after %.1f s without change%s; after scoring: %s)",
            printable(self.root),
            f"polling every {self.poll_seconds:.1f} s" if self.settings.polling else "inotify",
            self.settings.stable_seconds,
            ", or once closed or renamed in" if self.candidates.trust_settled else "",
            self.settings.after_scoring,
        )

    def close(self) -> None:
        """Stop watching and hashing, and send what is buffered."""
        self.recorder.close()
        self.finder.close()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
        self.batcher.flush(force=True)

    def run(self, stop: threading.Event, until_idle: Callable[[], bool] | None = None) -> None:
        """Tick until ``stop`` is set (or until ``until_idle()`` is true after a tick).
        Nothing that one file does ends the loop: an unexpected error is logged and the
        loop goes on."""
        self.start()
        try:
            while not stop.is_set():
                if not self._guarded_tick():
                    stop.wait(1.0)  # a bug, not a file: do not spin on it
                if until_idle is not None and until_idle():
                    return
                if self._more_to_do():
                    continue  # a long walk or many results: go on at once
                # wake early when files arrive, so a closed file is taken within milliseconds
                if self._events.wake.wait(self.tick_seconds):
                    self._events.wake.clear()
                    if self._events.waiting:
                        stop.wait(_BURST_SECONDS)  # let the rest of a burst of events arrive
        finally:
            self.close()

    def _guarded_tick(self) -> bool:
        try:
            self.tick()
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            if message != self._unexpected:
                log.exception("ingest: unexpected error, going on (%s)", printable(message))
            self._unexpected = message
            return False
        self._unexpected = None
        return True

    def _more_to_do(self) -> bool:
        walking = bool(self.finder.walks) and len(self.pending) < limits.MAX_PENDING
        return walking or bool(self.recorder.hashed)

    # --- one tick ---------------------------------------------------------------------

    def tick(self) -> None:
        """Note events, walk a slice, take stable files, record hashed ones, send, dispose
        and reconcile. Database outages are logged and retried on the next tick."""
        now = time.monotonic()
        paths, settled = self._note_events()
        try:
            self.finder.start_due_pass(now)
            self.finder.walk_some(now)
            for path in paths:
                self._see(path, now, settled=settled.get(path))
            self.recorder.take(self.candidates.check(now))
            self.recorder.record_hashed()
            self.batcher.flush()
            self._after_scoring(now)
            self._database.recovered("the database is reachable again")
        except TransientError as exc:
            self._database.failed("ingest paused: %s", exc)

    @property
    def _db_failing(self) -> bool:  # tests/worker/test_ingest_hostile.py reads it
        return self._database.down

    def _note_events(self) -> tuple[set[str], dict[str, bool]]:
        """The paths events named since the last tick, and inotify's last word on each;
        folders that appeared are walked (an overflow: the whole folder is)."""
        paths, dirs, settled, overflowed = self._events.drain()
        if overflowed:
            log.warning(
                "more than %d changes at once in %s: walking the whole folder instead",
                self._events.limit,
                printable(self.root),
            )
            self.finder.next_rescan = 0.0
        for folder in dirs:
            self.finder.walk_folder(folder)
        return paths, settled

    def _see(self, path: str, now: float, *, settled: bool | None = None) -> None:
        """An event about ``path``: forget it, or make (or keep) it a candidate."""
        if not self.candidates.see(path, now, settled=settled):
            self.finder.rescan_by(now + 1.0)  # too many wait: found again later

    def _after_scoring(self, now: float) -> None:
        """Dispose of scored files (once a second) and run the reconciler when due."""
        if self.settings.after_scoring != "keep" and now >= self._next_disposal:
            dispose_scored(self.root, self.settings, self.known)
            self._next_disposal = now + 1.0
        if self.reconcile_send is not None and now >= self._next_reconcile:
            reconcile(self.settings, self.reconcile_send, transport_empty=self._empty())
            self._next_reconcile = now + max(1.0, min(60.0, self.settings.heartbeat_seconds))

    def _empty(self) -> bool:
        """Whether the queue is known to be empty (the probe failing means "unknown")."""
        if self.transport_empty is None or not self.batcher.empty:
            return False
        try:
            return bool(self.transport_empty())
        except Exception as exc:
            log.debug("queue probe failed: %s", exc)
            return False

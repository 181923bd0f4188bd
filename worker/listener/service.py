"""``usqa listen``: the DICOM listener as its own process (scaled mode, beside ``usqa
ingest``): new scans are queued on the broker for ``usqa worker`` processes. A scan that
cannot be queued at once stays ``queued`` in the ledger and the ingester's reconciler
sends it."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path

from worker.listener.listener import Listener
from worker.ops.health import beating
from worker.settings import Settings

__all__ = ["BackgroundSender", "run_listener"]

log = logging.getLogger(__name__)


class BackgroundSender:
    """Hands ids to ``send`` from a thread of its own, so a slow broker never holds up
    the answer to a sender (the ledger row is already committed)."""

    def __init__(self, send: Callable[[list[int]], None]) -> None:
        self._send = send
        self._queue: queue.SimpleQueue[list[int] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="usqa-listen-send", daemon=True)
        self._thread.start()

    def __call__(self, ids: list[int]) -> None:
        self._queue.put(list(ids))

    def _work(self) -> None:
        while (ids := self._queue.get()) is not None:
            try:
                self._send(ids)
            except Exception as exc:
                log.warning("could not queue scan(s) %s (the reconciler will): %s", ids, exc)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)


def run_listener(root: Path, settings: Settings) -> int:
    """Serve until SIGTERM or SIGINT; returns 0."""
    from worker.service import start_scaled, stop_signals
    from worker.transport.celery_app import send_batch

    instead = "`usqa run --listen` to receive and score in one process"
    heartbeat = start_scaled(settings, "listen", instead)
    sender = BackgroundSender(lambda ids: send_batch(settings, ids))
    listener = Listener(str(root), settings, sender)
    with stop_signals() as stop:
        listener.start()
        try:
            tick = beating(heartbeat, None)
            while not stop.wait(1.0):
                if tick is not None:
                    tick()
        finally:
            listener.stop()
            sender.close()
            if heartbeat is not None:
                heartbeat.remove()
    return 0

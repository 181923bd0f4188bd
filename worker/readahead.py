"""Read-ahead: decode the next files of a batch while the model scores the frames already
read.

The decoder is a child process, so a thread that waits on it holds no GIL while the
parent's main thread runs the network. :class:`ReadAhead` runs one ``read(item, emit)``
call per item in a background thread; each call emits its frames (``emit(index, frame)``)
and returns what it learned of the file. The main thread takes the events from a bounded
queue in order. Memory stays bounded: at most ``frames_ahead`` frames wait in the queue
and at most ``files_ahead`` files are read before the main thread has seen their end.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

__all__ = ["IDLE", "Emit", "Ended", "Frame", "Idle", "ReadAhead", "Stopped"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

Emit = Callable[[int, np.ndarray], None]


class Stopped(Exception):  # noqa: N818 - a control signal, not an error the caller sees
    """Raised inside a ``read`` call when the main thread has given up on the batch."""


@dataclass
class Frame(Generic[T]):
    """One decoded frame of ``item``."""

    item: T
    index: int
    frame: np.ndarray


@dataclass
class Ended(Generic[T, R]):
    """``item`` is read: ``result`` is what ``read`` returned; ``waited`` the seconds it
    spent blocked because the main thread was behind (not decoding time)."""

    item: T
    result: R
    waited: float


class Idle:
    """No event came for the ``idle`` seconds given to :meth:`ReadAhead.events`: the
    reader is busy with one file (a slow one, or one that hangs until its time limit)."""


IDLE = Idle()


@dataclass
class _Fatal:
    exc: BaseException


_DONE = object()


class ReadAhead(Generic[T, R]):
    """Runs ``read(item, emit)`` for each item in a thread; iterate for the events
    (:class:`Frame` and :class:`Ended`, in order). An exception that ``read`` lets out is
    raised in the iterating thread. Always :meth:`close` (a ``with`` block does)."""

    def __init__(
        self,
        items: Sequence[T],
        read: Callable[[T, Emit], R],
        *,
        frames_ahead: int,
        files_ahead: int = 2,
        abort: Callable[[], None] | None = None,
    ) -> None:
        self.items = list(items)
        self.read = read
        self.abort = abort
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, frames_ahead))
        self._slots = threading.Semaphore(max(1, files_ahead))
        self._stop = threading.Event()
        self._waited = 0.0
        self._thread = threading.Thread(target=self._run, name="usqa-read-ahead", daemon=True)

    def __enter__(self) -> ReadAhead[T, R]:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the reading thread --

    def _blocked(self, attempt: Callable[[], bool]) -> None:
        started = time.perf_counter()
        while not attempt():
            if self._stop.is_set():
                raise Stopped
        self._waited += time.perf_counter() - started

    def _put(self, event: Any) -> None:
        def attempt() -> bool:
            try:
                self._queue.put(event, timeout=0.1)
            except queue.Full:
                return False
            return True

        self._blocked(attempt)

    def _emit_for(self, item: T) -> Emit:
        def emit(index: int, frame: np.ndarray) -> None:
            self._put(Frame(item, index, frame))

        return emit

    def _run(self) -> None:
        try:
            for item in self.items:
                self._blocked(lambda: self._slots.acquire(timeout=0.1))
                self._waited = 0.0
                result = self.read(item, self._emit_for(item))
                self._put(Ended(item, result, self._waited))
            self._put(_DONE)
        except Stopped:
            return
        except BaseException as exc:  # handed to the main thread, which decides
            try:
                self._put(_Fatal(exc))
            except Stopped:
                return

    # -- the main thread --

    def pending(self) -> bool:
        """Whether an event is ready now (False: the reader is still working)."""
        return not self._queue.empty()

    def __iter__(self) -> Iterator[Frame[T] | Ended[T, R]]:
        for event in self.events():
            if not isinstance(event, Idle):
                yield event

    def events(self, idle: float | None = None) -> Iterator[Frame[T] | Ended[T, R] | Idle]:
        """The events in order; with ``idle``, also :data:`IDLE` each time none came for
        that many seconds (so the caller can do what need not wait for the reader)."""
        while True:
            try:
                event = self._queue.get(timeout=idle)
            except queue.Empty:
                yield IDLE
                continue
            if event is _DONE:
                return
            if isinstance(event, _Fatal):
                raise event.exc
            if isinstance(event, Ended):
                self._slots.release()
            yield event

    def close(self) -> None:
        """Stop the reader (at once if the batch was abandoned) and wait for it."""
        if not self._thread.is_alive():
            return
        self._stop.set()
        self._drain()
        self._thread.join(timeout=0.5)
        if self._thread.is_alive() and self.abort is not None:
            log.debug("read-ahead still waiting on the decoder: stopping it")
            self.abort()
        while self._thread.is_alive():
            self._drain()
            self._thread.join(timeout=0.5)

    def _drain(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            return

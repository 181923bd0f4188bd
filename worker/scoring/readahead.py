"""Read-ahead: decode the next files of a batch while the model scores the frames already
read.

The decoder is a child process, so a thread that waits on it holds no GIL while the
parent's main thread runs the network. :class:`ReadAhead` runs one ``read(item, emit)``
call per item in a background thread (a *lane*); each call emits its frames
(``emit(index, frame)``) and returns what it learned of the file. The main thread takes
the events from a bounded queue. Memory stays bounded: at most ``frames_ahead`` frames
wait in the queue and at most ``files_ahead`` files are read before the main thread has
seen their end.

A slow or hung file does not hold back the files behind it: when every lane has been
stuck inside one file for ``stall_after`` seconds (no frame, no end) and files remain,
a spare lane (its own decoder child, from ``spare``) takes the rest of the batch. Each
file's frames still come in order; files from different lanes interleave.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

__all__ = ["IDLE", "Emit", "Ended", "Frame", "Idle", "Lane", "ReadAhead", "Stopped"]

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
class Lane(Generic[T, R]):
    """A way to read files: ``read(item, emit)``; ``abort`` makes a read that waits on its
    decoder end at once (from another thread); ``release`` hands the lane's resources back
    when the lane is done (a spare decoder to its pool)."""

    read: Callable[[T, Emit], R]
    abort: Callable[[], None] | None = None
    release: Callable[[], None] | None = None


@dataclass
class _Fatal:
    exc: BaseException


_DONE = object()


class _LaneState(Generic[T, R]):
    """One reading thread and where it stands (written by that thread, read by others)."""

    def __init__(self, lane: Lane[T, R], number: int) -> None:
        self.lane = lane
        self.number = number
        self.item: T | None = None
        self.reading = False  # inside read(), not waiting for the main thread
        self.progress = time.monotonic()  # last frame handed over, or the file's start
        self.waited = 0.0
        self.thread: threading.Thread | None = None

    def stalled(self, seconds: float, now: float) -> bool:
        return self.reading and now - self.progress >= seconds


class ReadAhead(Generic[T, R]):
    """Runs ``read(item, emit)`` for each item in a thread; iterate for the events
    (:class:`Frame` and :class:`Ended`; each item's frames in order, then its end). An
    exception that ``read`` lets out is raised in the iterating thread. Always
    :meth:`close` (a ``with`` block does).

    ``spare`` (optional) gives another :class:`Lane` or None when none is free: it is
    asked when every lane has been stuck in one file for ``stall_after`` seconds while
    files remain, up to ``max_lanes`` lanes in all."""

    def __init__(
        self,
        items: Sequence[T],
        read: Callable[[T, Emit], R],
        *,
        frames_ahead: int,
        files_ahead: int = 2,
        abort: Callable[[], None] | None = None,
        spare: Callable[[], Lane[T, R] | None] | None = None,
        stall_after: float = 2.0,
        max_lanes: int = 4,
    ) -> None:
        self.items = list(items)
        self.spare = spare
        self.stall_after = stall_after
        self.max_lanes = max(1, max_lanes)
        self._todo: deque[T] = deque(self.items)
        self._lock = threading.Lock()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, frames_ahead))
        self._slots = threading.Semaphore(max(1, files_ahead))
        self._stop = threading.Event()
        self._lanes: list[_LaneState[T, R]] = []
        self._active = 0
        self._first = Lane(read, abort)

    def __enter__(self) -> ReadAhead[T, R]:
        self._start_lane(self._first)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def lanes(self) -> int:
        """How many lanes this batch has used (1 unless a file stalled)."""
        return len(self._lanes)

    def _start_lane(self, lane: Lane[T, R]) -> None:
        state = _LaneState(lane, len(self._lanes) + 1)
        with self._lock:
            self._active += 1
            self._lanes.append(state)
        state.thread = threading.Thread(
            target=self._run, args=(state,), name=f"usqa-read-ahead-{state.number}", daemon=True
        )
        state.thread.start()

    # -- the reading threads --

    def _blocked(self, attempt: Callable[[], bool], state: _LaneState[T, R]) -> None:
        started = time.perf_counter()
        while not attempt():
            if self._stop.is_set():
                raise Stopped
        state.waited += time.perf_counter() - started

    def _put(self, event: Any, state: _LaneState[T, R]) -> None:
        def attempt() -> bool:
            try:
                self._queue.put(event, timeout=0.1)
            except queue.Full:
                return False
            return True

        state.reading = False
        try:
            self._blocked(attempt, state)
        finally:
            state.progress = time.monotonic()
            state.reading = state.item is not None

    def _emit_for(self, item: T, state: _LaneState[T, R]) -> Emit:
        def emit(index: int, frame: np.ndarray) -> None:
            self._put(Frame(item, index, frame), state)

        return emit

    def _next(self, state: _LaneState[T, R]) -> T | None:
        """The next item for this lane (holding a read-ahead slot), or None: all taken."""
        self._blocked(lambda: self._slots.acquire(timeout=0.1), state)
        with self._lock:
            if self._todo:
                return self._todo.popleft()
        self._slots.release()
        return None

    def _run(self, state: _LaneState[T, R]) -> None:
        try:
            while (item := self._next(state)) is not None:
                state.waited = 0.0
                state.item, state.progress, state.reading = item, time.monotonic(), True
                result = state.lane.read(item, self._emit_for(item, state))
                state.item, state.reading = None, False
                self._put(Ended(item, result, state.waited), state)
            with self._lock:
                self._active -= 1
                last = self._active == 0
            if last:
                self._put(_DONE, state)
        except Stopped:
            return
        except BaseException as exc:  # handed to the main thread, which decides
            state.reading = False
            try:
                self._put(_Fatal(exc), state)
            except Stopped:
                return
        finally:
            state.reading = False
            if state.lane.release is not None:
                state.lane.release()

    # -- the main thread --

    def pending(self) -> bool:
        """Whether an event is ready now (False: the readers are still working)."""
        return not self._queue.empty()

    def stalled(self, seconds: float | None = None) -> bool:
        """Whether a lane has been stuck inside one file for ``seconds`` (default
        ``stall_after``): no frame and no end from it for that long."""
        now = time.monotonic()
        limit = self.stall_after if seconds is None else seconds
        return any(lane.stalled(limit, now) for lane in self._lanes)

    def _maybe_spare(self) -> None:
        """Open a spare lane when every lane is stuck and files are still waiting."""
        if self.spare is None or len(self._lanes) >= self.max_lanes:
            return
        now = time.monotonic()
        with self._lock:
            waiting = bool(self._todo)
            live = [s for s in self._lanes if s.thread is not None and s.thread.is_alive()]
        if not waiting or not live or not all(s.stalled(self.stall_after, now) for s in live):
            return
        lane = self.spare()
        if lane is None:
            return
        log.info(
            "a file has taken over %.0f s to decode; the rest of its batch goes on in "
            "another decoder process (%d in use)",
            self.stall_after,
            len(self._lanes) + 1,
        )
        self._start_lane(lane)

    def __iter__(self) -> Iterator[Frame[T] | Ended[T, R]]:
        for event in self.events():
            if not isinstance(event, Idle):
                yield event

    def events(self, idle: float | None = None) -> Iterator[Frame[T] | Ended[T, R] | Idle]:
        """The events; with ``idle``, also :data:`IDLE` each time none came for that many
        seconds (so the caller can do what need not wait for the readers)."""
        poll = self.stall_after / 4 if self.spare is not None else None
        wait = min(x for x in (idle, poll) if x is not None) if idle or poll else None
        quiet_since = time.monotonic()
        while True:
            self._maybe_spare()
            try:
                event = self._queue.get(timeout=wait)
            except queue.Empty:
                if idle is not None and time.monotonic() - quiet_since >= idle:
                    quiet_since = time.monotonic()
                    yield IDLE
                continue
            quiet_since = time.monotonic()
            if event is _DONE:
                return
            if isinstance(event, _Fatal):
                raise event.exc
            if isinstance(event, Ended):
                self._slots.release()
            yield event

    def close(self) -> None:
        """Stop the readers (at once if the batch was abandoned) and wait for them."""
        self._stop.set()
        lanes = [s for s in self._lanes if s.thread is not None]
        self._drain()
        for state in lanes:
            assert state.thread is not None
            state.thread.join(timeout=0.5)
        for state in lanes:
            assert state.thread is not None
            if state.thread.is_alive() and state.lane.abort is not None:
                log.debug("read-ahead still waiting on a decoder: stopping it")
                state.lane.abort()
        for state in lanes:
            assert state.thread is not None
            while state.thread.is_alive():
                self._drain()
                state.thread.join(timeout=0.5)

    def _drain(self) -> None:
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            return

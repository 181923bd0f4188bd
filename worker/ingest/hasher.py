"""Content hashing off the ingester's loop, so that no file waits behind a large one.

Files below :data:`BIG_FILE_BYTES` are hashed by two threads, larger ones by a third: a
multi-gigabyte cine loop never holds back the small files that arrive with it, and the
loop itself (events, heartbeats, SIGTERM) never waits for a read. Each job opens the file
without following it into a pipe (``O_NONBLOCK``), checks that it is still the file that
was admitted (same device and inode, a regular file), reads at most its admitted size and
stops early when asked to (``close``).
"""

from __future__ import annotations

import hashlib
import os
import queue
import stat
import threading
from dataclasses import dataclass

__all__ = ["BIG_FILE_BYTES", "Hashed", "Hasher"]

BIG_FILE_BYTES = 64 * 1024 * 1024
_BLOCK = 1 << 20
_SMALL_THREADS = 2


@dataclass(frozen=True)
class Hashed:
    """The outcome of one job: the digest and the file's final ``stat``; or ``changed``
    (it was replaced, grew or shrank while read: wait for it to settle); or ``error`` (it
    could not be read: the reason)."""

    path: str
    digest: str | None = None
    st: os.stat_result | None = None
    changed: bool = False
    error: str | None = None


class _CancelledError(Exception):
    pass


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns) == (
        b.st_dev,
        b.st_ino,
        b.st_size,
        b.st_mtime_ns,
    )


def hash_file(path: str, admitted: os.stat_result, cancel: threading.Event) -> Hashed:
    """sha256 of the file at ``path`` if it is still the file ``admitted`` describes."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return Hashed(path, changed=True)
    except OSError as exc:
        return Hashed(path, error=f"it cannot be opened ({exc.strerror or exc})")
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode) or not _same_file(before, admitted):
            return Hashed(path, changed=True)
        digest = hashlib.sha256()
        left = admitted.st_size
        while left > 0:
            if cancel.is_set():
                raise _CancelledError
            block = os.read(fd, min(_BLOCK, left))
            if not block:
                break
            digest.update(block)
            left -= len(block)
        if left or os.read(fd, 1):
            return Hashed(path, changed=True)  # shorter or longer than when admitted
        after = os.fstat(fd)
    except _CancelledError:
        return Hashed(path, changed=True)
    except OSError as exc:
        return Hashed(path, error=f"it cannot be read ({exc.strerror or exc})")
    finally:
        os.close(fd)
    if not _same_file(after, admitted):
        return Hashed(path, changed=True)
    return Hashed(path, digest=digest.hexdigest(), st=after)


class Hasher:
    """Hashes files in background threads; :meth:`results` collects what is done.
    ``wake`` is set whenever a result is ready (the ingester's loop waits on it)."""

    def __init__(self, wake: threading.Event) -> None:
        self.wake = wake
        self.cancel = threading.Event()
        self._small: queue.SimpleQueue[tuple[str, os.stat_result] | None] = queue.SimpleQueue()
        self._big: queue.SimpleQueue[tuple[str, os.stat_result] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._done: list[Hashed] = []
        self._threads: list[threading.Thread] = []
        self.in_flight = 0

    def _start(self) -> None:
        lanes = [self._small] * _SMALL_THREADS + [self._big]
        for i, lane in enumerate(lanes):
            thread = threading.Thread(
                target=self._work, args=(lane,), name=f"usqa-hash-{i}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def submit(self, path: str, admitted: os.stat_result) -> None:
        """Hash ``path`` (a file admitted with this ``stat``)."""
        if not self._threads:
            self._start()
        with self._lock:
            self.in_flight += 1
        lane = self._big if admitted.st_size >= BIG_FILE_BYTES else self._small
        lane.put((path, admitted))

    def results(self) -> list[Hashed]:
        """The jobs finished since the last call."""
        with self._lock:
            done, self._done = self._done, []
        return done

    def _work(self, lane: queue.SimpleQueue[tuple[str, os.stat_result] | None]) -> None:
        while True:
            job = lane.get()
            if job is None or self.cancel.is_set():
                return
            path, admitted = job
            try:
                result = hash_file(path, admitted, self.cancel)
            except Exception as exc:  # one file's problem never stops the thread
                result = Hashed(path, error=f"it cannot be read ({type(exc).__name__}: {exc})")
            with self._lock:
                self._done.append(result)
                self.in_flight -= 1
            self.wake.set()

    def close(self, timeout: float = 2.0) -> None:
        """Stop the threads: a read in progress stops at its next block. Waits at most
        ``timeout`` seconds in all (the threads are daemons: a read stuck on a stalled
        share does not keep the process alive)."""
        self.cancel.set()
        for _ in range(_SMALL_THREADS):
            self._small.put(None)
        self._big.put(None)
        per_thread = timeout / max(1, len(self._threads))
        for thread in self._threads:
            thread.join(per_thread)
        self._threads = []

"""Admission and stability: the files seen but not recorded yet (``pending``), the files
remembered as recorded (``known``) and the paths refused (``refused``, each logged once).
A candidate is admitted again at every look, and is ready once it has held still."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from dicom_io.messages import printable
from worker.ingest import limits
from worker.ingest.admission import Folder, Refusal
from worker.ingest.bounded import Bounded

__all__ = ["Candidate", "Candidates", "signature", "stat_or_none"]

log = logging.getLogger("worker.ingest.ingester")  # one logger for the ingester's lines


@dataclass
class Candidate:
    """A file seen but not recorded yet, and since when it has looked the same."""

    size: int
    mtime_ns: int
    since: float
    identity: tuple[int, int] = (0, 0)  # device and inode
    seen: int = 1
    settled: bool = False  # inotify's latest word: closed after writing, or renamed in
    hashing: bool = False
    digests: frozenset[str] = field(default_factory=frozenset)  # this path's recorded contents


def new_candidate(st: os.stat_result, now: float, *, settled: bool = False) -> Candidate:
    return Candidate(
        st.st_size, st.st_mtime_ns, now, identity=(st.st_dev, st.st_ino), settled=settled
    )


def signature(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def stat_or_none(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


Ready = list[tuple[str, os.stat_result]]


class Candidates:
    """What the ingester knows of each path, between seeing it and recording it."""

    def __init__(self, folder: Folder, settings: Any) -> None:
        self.folder = folder
        self.settings = settings
        self.pending: dict[str, Candidate] = {}
        self.known: Bounded[str, tuple[int, int]] = Bounded(limits.KNOWN_FILES)
        self.refused: Bounded[str, tuple[str, tuple[int, int, int] | None]] = Bounded(
            limits.REFUSED_FILES
        )
        self.trust_settled = settings.settle_on_close and not settings.polling

    # --- refusals ---------------------------------------------------------------------

    def refuse(self, path: str, reason: str, signature: tuple[int, int, int] | None = None) -> None:
        """Log once why ``path`` is not taken; ``signature``: retried once the file changes."""
        self.pending.pop(path, None)
        if self.refused.get(path) == (reason, signature):
            return
        self.refused[path] = (reason, signature)
        log.warning("refused %s: %s", printable(path), reason)

    def refuse_dir(self, path: str, reason: str) -> None:
        self.refuse(path, reason)

    def unexaminable(self, path: str, exc: Exception) -> None:
        self.refuse(path, f"it cannot be examined ({type(exc).__name__}: {exc})")

    def admitted(self, path: str, *, walked: bool = False) -> os.stat_result | None:
        """The file's stat if it may be taken (refusals are logged once)."""
        answer = self.folder.admit(path, walked=walked)
        if isinstance(answer, Refusal):
            self.refuse(path, answer.reason)
            return None
        if answer is None:
            return None
        earlier = self.refused.get(path)
        if earlier is not None:
            if earlier[1] == signature(answer):
                return None  # could not be read or recorded, and has not changed since
            del self.refused[path]
        return answer

    # --- candidates -------------------------------------------------------------------

    def see(self, path: str, now: float, *, settled: bool | None = None) -> bool:
        """An event about ``path``: forget it, or make (or keep) it a candidate. False
        when it is left out because MAX_PENDING files wait (a walk finds it again)."""
        try:
            st = self.admitted(path)
        except Exception as exc:  # one error boundary per path
            self.unexaminable(path, exc)
            return True
        candidate = self.pending.get(path)
        if st is None:
            if candidate is not None and not candidate.hashing:
                del self.pending[path]
            return True
        if self.known.get(path) == (st.st_size, st.st_mtime_ns):
            return True
        if candidate is None:
            if len(self.pending) >= limits.MAX_PENDING:
                return False
            candidate = self.pending[path] = new_candidate(st, now)
        if settled is not None:
            candidate.settled = settled
        return True

    def add_unrecorded(
        self, found: Ready, now: float, recorded: dict[str, set[tuple[int, int]]]
    ) -> int:
        """Remember the files ``recorded`` has (by size and mtime), make candidates of the
        others; how many candidates are new."""
        added = 0
        for path, st in found:
            if (st.st_size, st.st_mtime_ns) in recorded.get(path, ()):
                self.known[path] = (st.st_size, st.st_mtime_ns)
            elif path not in self.pending:
                self.pending[path] = new_candidate(st, now)
                added += 1
        return added

    def mark_known(self, path: str, st: os.stat_result) -> None:
        self.pending.pop(path, None)
        self.known[path] = (st.st_size, st.st_mtime_ns)

    # --- stability --------------------------------------------------------------------

    def check(self, now: float) -> Ready:
        """Candidates whose size and mtime have held still for the stability window (at
        most TICK_SECONDS of checks per tick; the rest are checked next time)."""
        wall = time.time()
        deadline = time.monotonic() + limits.TICK_SECONDS
        ready = []
        for path in list(self.pending):
            if time.monotonic() >= deadline:
                break
            cand = self.pending.pop(path)
            if cand.hashing:
                self.pending[path] = cand
                continue
            try:  # admitted again, every link on the way resolved: it may have been swapped
                # for a link or a pipe since, or a folder on its way for a link to elsewhere
                st = self.admitted(path)
            except Exception as exc:
                self.unexaminable(path, exc)
                continue
            if st is None:
                continue  # gone, or refused: an event or the next walk finds it again
            self.pending[path] = cand  # to the end: the next tick starts with the others
            if (st.st_size, st.st_mtime_ns, (st.st_dev, st.st_ino)) != (
                cand.size,
                cand.mtime_ns,
                cand.identity,
            ):
                self.pending[path] = new_candidate(st, now, settled=cand.settled)
                continue
            cand.seen += 1
            if cand.seen >= 2 and self._quiet(cand, st, now, wall):
                ready.append((path, st))
        return ready

    def _quiet(self, cand: Candidate, st: os.stat_result, now: float, wall: float) -> bool:
        stable = self.settings.stable_seconds
        quiet = now - cand.since >= stable or (self.trust_settled and cand.settled)
        if not quiet and not self.settings.polling:
            # untouched for the window by its own mtime (e.g. found by the start-up walk);
            # not trusted on network shares, whose clocks may differ from ours
            quiet = wall - st.st_mtime_ns / 1e9 >= stable
        return quiet

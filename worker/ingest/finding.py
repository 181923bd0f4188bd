"""Finding files: which walks of the drop folder run (a full pass at start-up and every
``USQA_RESCAN_SECONDS``, or every poll; a folder moved in at once), each advanced a slice
per tick, and what they find looked up in the ledger a batch at a time before it becomes
a candidate."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from dicom_io.messages import printable
from worker.ingest import limits
from worker.ingest.admission import Folder
from worker.ingest.candidates import Candidates, Ready
from worker.ingest.names import DONE_DIR, FAILED_DIR
from worker.ingest.recording import recorded_files
from worker.ingest.walker import Walk

__all__ = ["Finder"]

log = logging.getLogger("worker.ingest.ingester")  # one logger for the ingester's lines


class Finder:
    """The walks in progress (the one advanced first at the head) and when the next full
    pass is due (``next_rescan``); ``passes``: full passes finished."""

    def __init__(
        self, root: str, folder: Folder, settings: Any, candidates: Candidates, poll: float
    ) -> None:
        self.root = root
        self.folder = folder
        self.settings = settings
        self.candidates = candidates
        self.poll_seconds = poll
        self.walks: list[Walk] = []
        self.next_rescan = 0.0
        self.passes = 0
        self._walk_logged = 0.0

    def close(self) -> None:
        for walk in self.walks:
            walk.close()
        self.walks = []

    def rescan_by(self, when: float) -> None:
        """A full pass no later than ``when`` (a file was left out: it is found again)."""
        self.next_rescan = min(self.next_rescan, when)

    def start_due_pass(self, now: float) -> None:
        """Start a full pass if one is due and none is in progress."""
        if now >= self.next_rescan and not any(w.full for w in self.walks):
            self.walks.append(Walk(self.root, self._enter, self.candidates.refuse_dir, full=True))
            self.next_rescan = float("inf")  # set again when this pass ends

    def _enter(self, dirpath: str, name: str) -> bool:
        """Whether the walk goes into the sub-folder ``name`` of ``dirpath``."""
        if name.startswith("."):
            return False
        return not (os.path.normpath(dirpath) == self.root and name in (DONE_DIR, FAILED_DIR))

    def walk_folder(self, folder: str) -> None:
        """Walk a folder that appeared (moved or created in), unless it is not ours."""
        rel = self.folder.relative(folder)
        if rel is None or any(p.startswith(".") for p in rel.split(os.sep)):
            return
        if rel.split(os.sep)[0] in (DONE_DIR, FAILED_DIR):
            return
        try:
            if not self.folder.real_folder(rel):
                self.candidates.refuse(folder, "a folder behind a symbolic link is never walked")
                return
        except OSError:
            return
        if any(w.full for w in self.walks) or any(w.top == folder for w in self.walks):
            return
        if len(self.walks) > 1000:  # a storm of new folders: one full walk covers them
            for walk in self.walks:
                walk.close()
            self.walks = []
            self.next_rescan = 0.0
            return
        self.walks.append(Walk(folder, self._enter, self.candidates.refuse_dir))

    def walk_some(self, now: float) -> None:
        """Advance the walks for up to TICK_SECONDS, while fewer than MAX_PENDING files wait;
        what they find is looked up in the ledger a batch at a time."""
        deadline = time.monotonic() + limits.TICK_SECONDS
        pending = self.candidates.pending
        while self.walks and len(pending) < limits.MAX_PENDING and time.monotonic() < deadline:
            walk = self.walks[0]
            found = walk.step(limits.LOOKUP_BATCH, deadline)
            fresh: Ready = []
            for path, _entry in found:
                try:
                    st = self.candidates.admitted(path, walked=True)
                except Exception as exc:  # one path never stops the walk
                    self.candidates.unexaminable(path, exc)
                    continue
                if st is not None and self.candidates.known.get(path) != (
                    st.st_size,
                    st.st_mtime_ns,
                ):
                    fresh.append((path, st))
            walk.new += self._add_unrecorded(fresh, now)
            if walk.done:
                self.walks.pop(0)
                self._walk_finished(walk)
            else:
                self._log_progress(walk)

    def _log_progress(self, walk: Walk) -> None:
        if time.monotonic() - self._walk_logged >= limits.PROGRESS_SECONDS and (
            time.monotonic() - walk.started >= limits.PROGRESS_SECONDS
        ):
            self._walk_logged = time.monotonic()
            log.info(
                "walking %s: %d entries so far (%d new files) in %.0f s",
                printable(walk.top),
                walk.entries,
                walk.new,
                time.monotonic() - walk.started,
            )

    def _walk_finished(self, walk: Walk) -> None:
        took = time.monotonic() - walk.started
        if walk.full:
            self.passes += 1
            interval = self.poll_seconds if self.settings.polling else self.settings.rescan_seconds
            self.next_rescan = time.monotonic() + interval
        level = logging.INFO if walk.full and (self.passes == 1 or took >= 10) else logging.DEBUG
        log.log(
            level,
            "walked %s: %d files in %.1f s, %d not recorded yet",
            printable(walk.top),
            walk.files,
            took,
            walk.new,
        )

    def _add_unrecorded(self, found: Ready, now: float) -> int:
        """Make candidates of the files the ledger does not have yet (a restart over a
        folder of kept files then costs one lookup per LOOKUP_BATCH files, nothing more)."""
        if not found:
            return 0
        views = recorded_files(self.settings, [p for p, _ in found])
        recorded = {p: {(size, mtime) for size, mtime, _ in rs} for p, rs in views.items()}
        return self.candidates.add_unrecorded(found, now, recorded)

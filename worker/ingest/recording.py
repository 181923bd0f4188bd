"""Recording in the ledger: stable files are looked up (already recorded ones are
remembered), those over the size limit are recorded ``failed`` unread, the others are
hashed in the background and recorded a batch at a time (copies of known content
``skipped``), and the ids to score go to the batcher. One bad row never blocks the others."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import db
from db import ledger
from db.models import Scan
from dicom_io.messages import first_line, printable
from worker.errors import TransientError
from worker.ingest import limits
from worker.ingest.batcher import Batcher
from worker.ingest.candidates import Candidates, Ready, signature, stat_or_none
from worker.ingest.hasher import Hashed, Hasher
from worker.logs import log_outcome
from worker.ops import metrics

__all__ = ["FIRST_BATCH_FILES", "Recorder", "recorded_files", "still_there"]

log = logging.getLogger("worker.ingest.ingester")  # one logger for the ingester's lines

FIRST_BATCH_FILES = 8  # files in the first batch of a burst: the decoder starts on them at once

Files = list[tuple[ledger.ReceivedFile, os.stat_result]]


def still_there(settings: Any, row: Scan) -> bool:
    """Whether a ledger row still stands for the file at its path (not moved/deleted
    away by the after-scoring policy, so a file back at that path is a new delivery)."""
    return settings.after_scoring == "keep" or row.disposed_at is None


def recorded_files(settings: Any, paths: list[str]) -> dict[str, list[tuple[int, int, str]]]:
    """Size, mtime and content of the rows that still stand for each of ``paths``."""
    with db.session_scope(settings.database_url, readonly=True) as session:
        rows = ledger.known_files(session, paths)
        return {
            p: [(r.size_bytes, r.mtime_ns, r.sha256) for r in rs if still_there(settings, r)]
            for p, rs in rows.items()
        }


def _size_text(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit} ({size} bytes)"
        value /= 1024
    return f"{size} bytes"


def _entry(path: str, st: os.stat_result, digest: str) -> ledger.ReceivedFile:
    return ledger.ReceivedFile(
        path, st.st_size, st.st_mtime_ns, digest, device=st.st_dev, inode=st.st_ino
    )


class Recorder:
    """Takes stable files from ``candidates`` into the ledger and their ids to ``batcher``.
    ``see`` is told of a file that changed while it was read (it is waited for again)."""

    def __init__(
        self,
        settings: Any,
        candidates: Candidates,
        batcher: Batcher,
        see: Callable[[str, float], None],
        wake: threading.Event,
    ) -> None:
        self.settings = settings
        self.candidates = candidates
        self.batcher = batcher
        self._see = see
        self._hasher = Hasher(wake)
        self.hashed: list[Hashed] = []
        self.recorded = 0

    def close(self) -> None:
        self._hasher.close()

    # --- taking stable files ----------------------------------------------------------

    def take(self, ready: Ready) -> None:
        """Stable files: already recorded ones are remembered, those over the size limit
        are recorded ``failed`` unread, the others are handed to the hashing threads."""
        if not ready:
            return
        for start in range(0, len(ready), limits.LOOKUP_BATCH):
            self._take_batch(ready[start : start + limits.LOOKUP_BATCH])

    def _take_batch(self, ready: Ready) -> None:
        views = recorded_files(self.settings, [p for p, _ in ready])
        too_large: Ready = []
        for path, st in ready:
            same = views.get(path, [])
            if any(r[0] == st.st_size and r[1] == st.st_mtime_ns for r in same):
                self.candidates.mark_known(path, st)
            elif st.st_size > self.settings.max_file_bytes:
                too_large.append((path, st))
            else:
                cand = self.candidates.pending[path]
                cand.hashing = True
                cand.digests = frozenset(r[2] for r in same)
                self._hasher.submit(path, st)
        if too_large:
            self._record_too_large(too_large)

    def _record_too_large(self, files: Ready) -> None:
        limit = self.settings.max_file_bytes
        reasons = [
            f"the file is {_size_text(st.st_size)}, over the {_size_text(limit)} limit "
            "(USQA_MAX_FILE_BYTES); it was not read: raise USQA_MAX_FILE_BYTES if files this "
            "large are expected"
            for _, st in files
        ]
        entries = [(_entry(path, st, ""), st) for path, st in files]
        why = dict(zip((e.path for e, _ in entries), reasons, strict=True))

        def insert(batch: list[ledger.ReceivedFile]) -> list[ledger.Received]:
            with db.session_scope(self.settings.database_url) as session:
                return ledger.record_failed_many(session, batch, [why[f.path] for f in batch])

        kept, received = self._insert_or_refuse(entries, insert)
        for (entry, st), row in zip(kept, received, strict=True):
            path = entry.path
            log_outcome(log, row.id, "failed", reason=row.reason, where=printable(path))
            self.candidates.mark_known(path, st)
            metrics.scan_finished("failed", reason="limit")
        self.recorded += len(received)
        metrics.scan_received(len(received))

    # --- recording hashed files -------------------------------------------------------

    def record_hashed(self) -> None:
        """Record what the hashing threads finished, a batch at a time (the first batch
        small, so scoring starts on it while the rest are recorded)."""
        self.hashed.extend(self._hasher.results())
        if not self.hashed:
            return
        step = min(FIRST_BATCH_FILES, self.batcher.size)
        deadline = time.monotonic() + limits.TICK_SECONDS
        while self.hashed and time.monotonic() < deadline:
            chunk = self.hashed[:step]
            self._record(chunk)  # raises TransientError: the chunk stays for the next tick
            del self.hashed[: len(chunk)]
            self.batcher.flush()
            step = self.batcher.size

    def _record(self, results: list[Hashed]) -> None:
        pending = self.candidates.pending
        fresh: Files = []
        for result in results:
            cand = pending.get(result.path)
            if cand is None or not cand.hashing:
                continue  # forgotten meanwhile
            if result.error is not None:
                st = stat_or_none(result.path)
                self.candidates.refuse(result.path, result.error, signature(st) if st else None)
                continue
            if result.changed or result.digest is None or result.st is None:
                del pending[result.path]  # changed while read: wait for it again
                self._see(result.path, time.monotonic())
                continue
            if result.digest in cand.digests:
                self.candidates.mark_known(result.path, result.st)
                continue
            fresh.append((_entry(result.path, result.st, result.digest), result.st))
        if not fresh:
            return
        kept, received = self._insert_or_refuse(fresh, self._insert)
        self._after_insert(kept, received)

    def _insert_or_refuse(
        self, files: Files, insert: Callable[[list[ledger.ReceivedFile]], list[ledger.Received]]
    ) -> tuple[Files, list[ledger.Received]]:
        """``insert`` the files together; if that fails for another reason than an outage
        (TransientError, raised: retried next tick), one by one, refusing each file that
        cannot be recorded (a path the database cannot index...; logged once, tried again
        once the file changes), so one bad row never blocks the others. The files
        recorded and their rows, in order."""
        if not files:
            return [], []
        try:
            return files, insert([f for f, _ in files])
        except TransientError:
            raise
        except Exception as exc:
            log.debug("recording %d file(s) together failed (%s)", len(files), exc)
        kept: Files = []
        received: list[ledger.Received] = []
        for entry, st in files:
            try:
                received += insert([entry])
            except TransientError:
                raise
            except Exception as one:
                self.candidates.refuse(
                    entry.path,
                    f"it could not be recorded ({first_line(one, limit=300)})",
                    signature(st),
                )
                continue
            kept.append((entry, st))
        return kept, received

    def _insert(self, files: list[ledger.ReceivedFile]) -> list[ledger.Received]:
        with db.session_scope(self.settings.database_url) as session:
            originals = ledger.find_originals(session, (f.sha256 for f in files if f.size_bytes))
            return ledger.record_received_many(session, files, originals=originals)

    def _after_insert(self, fresh: Files, received: list[ledger.Received]) -> None:
        queued = [row.id for row in received if row.duplicate_of is None]
        for row in received:
            if row.duplicate_of is not None:
                log_outcome(log, row.id, "skipped", reason=row.reason)
        for entry, st in fresh:
            self.candidates.mark_known(entry.path, st)
        self.recorded += len(received)
        metrics.scan_received(len(received))
        for _ in range(len(received) - len(queued)):  # copies of known content: skipped at once
            metrics.scan_finished("skipped", reason="duplicate")
        log.debug("recorded %d file(s), %d queued", len(received), len(queued))
        self.batcher.add(queued)

"""The ingester's loop: find files, admit them, hash and record them, queue their ids,
dispose of them after scoring. See the package docstring for the rules."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import db
from db import ledger, paths
from db.models import Scan
from worker.errors import ConfigError, TransientError
from worker.ingest.admission import Folder, Refusal
from worker.ingest.batcher import Batcher
from worker.ingest.bounded import Bounded
from worker.ingest.disposal import Disposal, dispose
from worker.ingest.events import Events, event_filter, inotify_observer
from worker.ingest.hasher import Hashed, Hasher
from worker.ingest.names import DONE_DIR, FAILED_DIR, shown
from worker.ingest.reconciler import reconcile
from worker.ingest.walker import Walk
from worker.ops import metrics

__all__ = ["Ingester"]

log = logging.getLogger(__name__)

_BURST_SECONDS = 0.02  # after the first event, how long to gather the events that follow it
FIRST_BATCH_FILES = 8  # files in the first batch of a burst: the decoder starts on them at once
# Bounds that keep one tick short and the ingester's memory flat, whatever the folder holds.
TICK_SECONDS = 0.3  # most time one tick spends walking, or checking candidates
MAX_PENDING = 10_000  # files seen but not recorded yet; the walk waits while this many are
KNOWN_FILES = 200_000  # files remembered as recorded (older ones are looked up in the ledger)
REFUSED_FILES = 20_000  # refused paths remembered, so each is logged once
LOOKUP_BATCH = 500  # paths per ledger lookup
PROGRESS_SECONDS = 10.0  # a long walk logs its progress this often


@dataclass
class _Candidate:
    """A file seen but not recorded yet, and since when it has looked the same."""

    size: int
    mtime_ns: int
    since: float
    identity: tuple[int, int] = (0, 0)  # device and inode
    seen: int = 1
    settled: bool = False  # inotify's latest word: closed after writing, or renamed in
    hashing: bool = False
    digests: frozenset[str] = field(default_factory=frozenset)  # this path's recorded contents


def _signature(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _size_text(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} bytes" if unit == "bytes" else f"{value:.1f} {unit} ({size} bytes)"
        value /= 1024
    return f"{size} bytes"


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
        self.pending: dict[str, _Candidate] = {}
        self.known: Bounded[str, tuple[int, int]] = Bounded(KNOWN_FILES)
        self.refused: Bounded[str, tuple[str, tuple[int, int, int] | None]] = Bounded(REFUSED_FILES)
        self.recorded = 0
        self._events = Events()
        self._hasher = Hasher(self._events.wake)
        self._hashed: list[Hashed] = []
        self._trust_settled = settings.settle_on_close and not settings.polling
        self._observer: Any = None
        self._next_rescan = 0.0
        self._next_reconcile = 0.0
        self._next_disposal = 0.0
        self._db_failing = False
        self._walks: list[Walk] = []  # the one in progress first
        self._walk_logged = 0.0
        self._passes = 0
        self._unexpected: str | None = None

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
            shown(self.root),
            f"polling every {self.poll_seconds:.1f} s" if self.settings.polling else "inotify",
            self.settings.stable_seconds,
            ", or once closed or renamed in" if self._trust_settled else "",
            self.settings.after_scoring,
        )

    def close(self) -> None:
        """Stop watching and hashing, and send what is buffered."""
        self._hasher.close()
        for walk in self._walks:
            walk.close()
        self._walks = []
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
                log.exception("ingest: unexpected error, going on (%s)", shown(message))
            self._unexpected = message
            return False
        self._unexpected = None
        return True

    def _more_to_do(self) -> bool:
        walking = bool(self._walks) and len(self.pending) < MAX_PENDING
        return walking or bool(self._hashed)

    @property
    def idle(self) -> bool:
        """Nothing seen that is not recorded and sent yet."""
        return (
            not self.pending
            and not self._hashed
            and self.batcher.empty
            and not self._walks
            and self._passes > 0
        )

    @property
    def ledger_root(self) -> str:
        """The drop folder as the ledger's ``scans.path`` values begin (db/paths.py)."""
        return ledger.paths_text(self.root)

    # --- one tick ---------------------------------------------------------------------

    def tick(self) -> None:
        """Note events, walk a slice, take stable files, record hashed ones, send, dispose
        and reconcile. Database outages are logged and retried on the next tick."""
        now = time.monotonic()
        paths, dirs, settled, overflowed = self._events.drain()
        if overflowed:
            log.warning(
                "more than %d changes at once in %s: walking the whole folder instead",
                self._events.limit,
                shown(self.root),
            )
            self._next_rescan = 0.0
        for folder in dirs:
            self._walk_folder(folder)
        try:
            if now >= self._next_rescan and not any(w.full for w in self._walks):
                self._walks.append(Walk(self.root, self._enter, self._refuse_dir, full=True))
                self._next_rescan = float("inf")  # set again when this pass ends
            self._walk_some(now)
            for path in paths:
                self._see(path, now, settled=settled.get(path))
            ready = self._check(now)
            self._take(ready)
            self._record_hashed()
            self.batcher.flush()
            if self.settings.after_scoring != "keep" and now >= self._next_disposal:
                self._dispose()
                self._next_disposal = now + 1.0
            if self.reconcile_send is not None and now >= self._next_reconcile:
                reconcile(self.settings, self.reconcile_send, transport_empty=self._empty())
                self._next_reconcile = now + max(1.0, min(60.0, self.settings.heartbeat_seconds))
            if self._db_failing:
                log.info("the database is reachable again")
            self._db_failing = False
        except TransientError as exc:
            if not self._db_failing:
                log.warning("ingest paused: %s", exc)
            self._db_failing = True

    def _empty(self) -> bool:
        """Whether the queue is known to be empty (the probe failing means "unknown")."""
        if self.transport_empty is None or not self.batcher.empty:
            return False
        try:
            return bool(self.transport_empty())
        except Exception as exc:
            log.debug("queue probe failed: %s", exc)
            return False

    # --- refusals ---------------------------------------------------------------------

    def _refuse(
        self, path: str, reason: str, signature: tuple[int, int, int] | None = None
    ) -> None:
        """Log once why ``path`` is not taken; ``signature``: retried once the file changes."""
        self.pending.pop(path, None)
        if self.refused.get(path) == (reason, signature):
            return
        self.refused[path] = (reason, signature)
        log.warning("refused %s: %s", shown(path), reason)

    def _refuse_dir(self, path: str, reason: str) -> None:
        self._refuse(path, reason)

    # --- finding files ----------------------------------------------------------------

    def _enter(self, dirpath: str, name: str) -> bool:
        """Whether the walk goes into the sub-folder ``name`` of ``dirpath``."""
        if name.startswith("."):
            return False
        return not (os.path.normpath(dirpath) == self.root and name in (DONE_DIR, FAILED_DIR))

    def _walk_folder(self, folder: str) -> None:
        """Walk a folder that appeared (moved or created in), unless it is not ours."""
        rel = self.folder.relative(folder)
        if rel is None or any(p.startswith(".") for p in rel.split(os.sep)):
            return
        if rel.split(os.sep)[0] in (DONE_DIR, FAILED_DIR):
            return
        try:
            if not self.folder.real_folder(rel):
                self._refuse(folder, "a folder behind a symbolic link is never walked")
                return
        except OSError:
            return
        if any(w.full for w in self._walks) or any(w.top == folder for w in self._walks):
            return
        if len(self._walks) > 1000:  # a storm of new folders: one full walk covers them
            for walk in self._walks:
                walk.close()
            self._walks = []
            self._next_rescan = 0.0
            return
        self._walks.append(Walk(folder, self._enter, self._refuse_dir))

    def _walk_some(self, now: float) -> None:
        """Advance the walks for up to TICK_SECONDS, while fewer than MAX_PENDING files wait;
        what they find is looked up in the ledger a batch at a time."""
        deadline = time.monotonic() + TICK_SECONDS
        while self._walks and len(self.pending) < MAX_PENDING and time.monotonic() < deadline:
            walk = self._walks[0]
            found = walk.step(LOOKUP_BATCH, deadline)
            fresh: list[tuple[str, os.stat_result]] = []
            for path, _entry in found:
                try:
                    st = self._admitted(path, walked=True)
                except Exception as exc:  # one path never stops the walk
                    self._refuse(path, f"it cannot be examined ({type(exc).__name__}: {exc})")
                    continue
                if st is not None and self.known.get(path) != (st.st_size, st.st_mtime_ns):
                    fresh.append((path, st))
            walk.new += self._add_unrecorded(fresh, now)
            if walk.done:
                self._walks.pop(0)
                self._walk_finished(walk)
            elif time.monotonic() - self._walk_logged >= PROGRESS_SECONDS and (
                time.monotonic() - walk.started >= PROGRESS_SECONDS
            ):
                self._walk_logged = time.monotonic()
                log.info(
                    "walking %s: %d entries so far (%d new files) in %.0f s",
                    shown(walk.top),
                    walk.entries,
                    walk.new,
                    time.monotonic() - walk.started,
                )

    def _walk_finished(self, walk: Walk) -> None:
        took = time.monotonic() - walk.started
        if walk.full:
            self._passes += 1
            interval = self.poll_seconds if self.settings.polling else self.settings.rescan_seconds
            self._next_rescan = time.monotonic() + interval
        level = logging.INFO if walk.full and (self._passes == 1 or took >= 10) else logging.DEBUG
        log.log(
            level,
            "walked %s: %d files in %.1f s, %d not recorded yet",
            shown(walk.top),
            walk.files,
            took,
            walk.new,
        )

    def _add_unrecorded(self, found: list[tuple[str, os.stat_result]], now: float) -> int:
        """Make candidates of the files the ledger does not have yet (a restart over a
        folder of kept files then costs one lookup per LOOKUP_BATCH files, nothing more)."""
        if not found:
            return 0
        with db.session_scope(self.settings.database_url, readonly=True) as session:
            rows = ledger.known_files(session, [p for p, _ in found])
            recorded = {
                p: {(r.size_bytes, r.mtime_ns) for r in rs if self._still_there(r)}
                for p, rs in rows.items()
            }
        added = 0
        for path, st in found:
            if (st.st_size, st.st_mtime_ns) in recorded.get(path, ()):
                self.known[path] = (st.st_size, st.st_mtime_ns)
            elif path not in self.pending:
                self.pending[path] = _new(st, now)
                added += 1
        return added

    def _admitted(self, path: str, *, walked: bool = False) -> os.stat_result | None:
        """The file's stat if it may be taken (refusals are logged once)."""
        answer = self.folder.admit(path, walked=walked)
        if isinstance(answer, Refusal):
            self._refuse(path, answer.reason)
            return None
        if answer is None:
            return None
        earlier = self.refused.get(path)
        if earlier is not None:
            if earlier[1] == _signature(answer):
                return None  # could not be read or recorded, and has not changed since
            del self.refused[path]
        return answer

    def _see(self, path: str, now: float, *, settled: bool | None = None) -> None:
        """An event about ``path``: forget it, or make (or keep) it a candidate."""
        try:
            st = self._admitted(path)
        except Exception as exc:  # one error boundary per path
            self._refuse(path, f"it cannot be examined ({type(exc).__name__}: {exc})")
            return
        candidate = self.pending.get(path)
        if st is None:
            if candidate is not None and not candidate.hashing:
                del self.pending[path]
            return
        if self.known.get(path) == (st.st_size, st.st_mtime_ns):
            return
        if candidate is None:
            if len(self.pending) >= MAX_PENDING:
                self._next_rescan = min(self._next_rescan, now + 1.0)  # found again later
                return
            candidate = self.pending[path] = _new(st, now)
        if settled is not None:
            candidate.settled = settled

    def _check(self, now: float) -> list[tuple[str, os.stat_result]]:
        """Candidates whose size and mtime have held still for the stability window (at
        most TICK_SECONDS of checks per tick; the rest are checked next time)."""
        stable = self.settings.stable_seconds
        wall = time.time()
        deadline = time.monotonic() + TICK_SECONDS
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
                st = self._admitted(path)
            except Exception as exc:
                self._refuse(path, f"it cannot be examined ({type(exc).__name__}: {exc})")
                continue
            if st is None:
                continue  # gone, or refused: an event or the next walk finds it again
            self.pending[path] = cand  # to the end: the next tick starts with the others
            if (st.st_size, st.st_mtime_ns, (st.st_dev, st.st_ino)) != (
                cand.size,
                cand.mtime_ns,
                cand.identity,
            ):
                self.pending[path] = _new(st, now, settled=cand.settled)
                continue
            cand.seen += 1
            quiet = now - cand.since >= stable or (self._trust_settled and cand.settled)
            if not quiet and not self.settings.polling:
                # untouched for the window by its own mtime (e.g. found by the start-up walk);
                # not trusted on network shares, whose clocks may differ from ours
                quiet = wall - st.st_mtime_ns / 1e9 >= stable
            if cand.seen >= 2 and quiet:
                ready.append((path, st))
        return ready

    # --- recording --------------------------------------------------------------------

    def _still_there(self, row: Scan) -> bool:
        """Whether a ledger row still stands for the file at its path (not moved/deleted
        away by the after-scoring policy, so a file back at that path is a new delivery)."""
        return self.settings.after_scoring == "keep" or row.disposed_at is None

    def _take(self, ready: list[tuple[str, os.stat_result]]) -> None:
        """Stable files: already recorded ones are remembered, those over the size limit
        are recorded ``failed`` unread, the others are handed to the hashing threads."""
        if not ready:
            return
        for start in range(0, len(ready), LOOKUP_BATCH):
            self._take_batch(ready[start : start + LOOKUP_BATCH])

    def _take_batch(self, ready: list[tuple[str, os.stat_result]]) -> None:
        with db.session_scope(self.settings.database_url, readonly=True) as session:
            rows = ledger.known_files(session, [p for p, _ in ready])
            views = {
                p: [(r.size_bytes, r.mtime_ns, r.sha256) for r in rs if self._still_there(r)]
                for p, rs in rows.items()
            }
        too_large: list[tuple[str, os.stat_result]] = []
        for path, st in ready:
            same = views.get(path, [])
            if any(r[0] == st.st_size and r[1] == st.st_mtime_ns for r in same):
                self._mark_known(path, st)
            elif st.st_size > self.settings.max_file_bytes:
                too_large.append((path, st))
            else:
                cand = self.pending[path]
                cand.hashing = True
                cand.digests = frozenset(r[2] for r in same)
                self._hasher.submit(path, st)
        if too_large:
            self._record_too_large(too_large)

    def _record_too_large(self, files: list[tuple[str, os.stat_result]]) -> None:
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
            log.warning(
                "scan %d failed: %s: %s",
                row.id,
                shown(path),
                row.reason,
                extra={"scan_id": row.id, "status": "failed", "reason": row.reason},
            )
            self._mark_known(path, st)
            metrics.scan_finished("failed", reason="limit")
        self.recorded += len(received)
        metrics.scan_received(len(received))

    def _record_hashed(self) -> None:
        """Record what the hashing threads finished, a batch at a time (the first batch
        small, so scoring starts on it while the rest are recorded)."""
        self._hashed.extend(self._hasher.results())
        if not self._hashed:
            return
        step = min(FIRST_BATCH_FILES, self.batcher.size)
        deadline = time.monotonic() + TICK_SECONDS
        while self._hashed and time.monotonic() < deadline:
            chunk = self._hashed[:step]
            self._record(chunk)  # raises TransientError: the chunk stays for the next tick
            del self._hashed[: len(chunk)]
            self.batcher.flush()
            step = self.batcher.size

    def _record(self, results: list[Hashed]) -> None:
        fresh: list[tuple[ledger.ReceivedFile, os.stat_result]] = []
        for result in results:
            cand = self.pending.get(result.path)
            if cand is None or not cand.hashing:
                continue  # forgotten meanwhile
            if result.error is not None:
                st = _stat_or_none(result.path)
                self._refuse(result.path, result.error, _signature(st) if st else None)
                continue
            if result.changed or result.digest is None or result.st is None:
                del self.pending[result.path]  # changed while read: wait for it again
                self._see(result.path, time.monotonic())
                continue
            if result.digest in cand.digests:
                self._mark_known(result.path, result.st)
                continue
            fresh.append((_entry(result.path, result.st, result.digest), result.st))
        if not fresh:
            return
        kept, received = self._insert_or_refuse(fresh, self._insert)
        self._after_insert(kept, received)

    def _insert_or_refuse(
        self,
        files: list[tuple[ledger.ReceivedFile, os.stat_result]],
        insert: Callable[[list[ledger.ReceivedFile]], list[ledger.Received]],
    ) -> tuple[list[tuple[ledger.ReceivedFile, os.stat_result]], list[ledger.Received]]:
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
        kept: list[tuple[ledger.ReceivedFile, os.stat_result]] = []
        received: list[ledger.Received] = []
        for entry, st in files:
            try:
                received += insert([entry])
            except TransientError:
                raise
            except Exception as one:
                text = str(one).splitlines()[0] if str(one) else ""
                self._refuse(
                    entry.path,
                    f"it could not be recorded ({type(one).__name__}: {text[:300]})",
                    _signature(st),
                )
                continue
            kept.append((entry, st))
        return kept, received

    def _insert(self, files: list[ledger.ReceivedFile]) -> list[ledger.Received]:
        with db.session_scope(self.settings.database_url) as session:
            originals = ledger.find_originals(session, (f.sha256 for f in files if f.size_bytes))
            return ledger.record_received_many(session, files, originals=originals)

    def _after_insert(
        self,
        fresh: list[tuple[ledger.ReceivedFile, os.stat_result]],
        received: list[ledger.Received],
    ) -> None:
        queued = [row.id for row in received if row.duplicate_of is None]
        for row in received:
            if row.duplicate_of is not None:
                log.info(
                    "scan %d skipped: %s",
                    row.id,
                    row.reason,
                    extra={"scan_id": row.id, "status": "skipped", "reason": row.reason},
                )
        for entry, st in fresh:
            self._mark_known(entry.path, st)
        self.recorded += len(received)
        metrics.scan_received(len(received))
        for _ in range(len(received) - len(queued)):  # copies of known content: skipped at once
            metrics.scan_finished("skipped", reason="duplicate")
        log.debug("recorded %d file(s), %d queued", len(received), len(queued))
        self.batcher.add(queued)

    def _mark_known(self, path: str, st: os.stat_result) -> None:
        self.pending.pop(path, None)
        self.known[path] = (st.st_size, st.st_mtime_ns)

    # --- after scoring ----------------------------------------------------------------

    def _dispose(self) -> None:
        url = self.settings.database_url
        with db.session_scope(url, readonly=True) as session:
            scans = ledger.pending_disposal(session, self.root)
        if not scans:
            return
        done: list[Disposal] = []
        policy = self.settings.after_scoring
        for scan in scans:
            try:
                outcome = dispose(self.root, scan, policy)
            except OSError as exc:
                outcome = Disposal(scan.id, "kept", None, f"could not: {exc.strerror or exc}")
            except Exception as exc:  # one file's problem never stops the others
                outcome = Disposal(scan.id, "kept", None, f"could not: {type(exc).__name__}")
            if outcome.message:
                log.warning(
                    "after scoring (%s) scan %d, %s: %s",
                    policy,
                    scan.id,
                    scan.path,
                    outcome.message,
                )
            done.append(outcome)
            self.known.pop(paths.fs_path(scan.path, scan.path_bytes), None)
        with db.session_scope(url) as session:
            for outcome in done:
                ledger.mark_disposed(
                    session, outcome.scan_id, outcome.disposition, outcome.new_path
                )


def _new(st: os.stat_result, now: float, *, settled: bool = False) -> _Candidate:
    return _Candidate(
        st.st_size, st.st_mtime_ns, now, identity=(st.st_dev, st.st_ino), settled=settled
    )


def _entry(path: str, st: os.stat_result, digest: str) -> ledger.ReceivedFile:
    return ledger.ReceivedFile(
        path, st.st_size, st.st_mtime_ns, digest, device=st.st_dev, inode=st.st_ino
    )


def _stat_or_none(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None

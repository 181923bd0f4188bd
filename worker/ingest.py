"""The ingester: watches the drop folder, records each complete file in the ledger, then
queues its id.

* **Events and rescans.** A watchdog observer (inotify; or polling with
  ``USQA_POLLING=1`` for NFS/SMB shares, where inotify sees nothing) reports changes,
  recursively. A walk of the whole folder at start-up and every ``USQA_RESCAN_SECONDS``
  catches what events missed (files that arrived while the ingester was down, dropped
  inotify events). A folder moved in is walked at once.
* **Complete files only.** A file is taken once its size and mtime have not changed for
  ``USQA_STABLE_SECONDS``, or at once when inotify's last word on it is that its writer
  closed it (IN_CLOSE_WRITE) or that it was renamed into the folder (``USQA_SETTLE_ON_CLOSE``,
  on by default; never when polling). A file that changes after it was taken is recorded
  again as a new scan, so an early take loses nothing. Temporary names (``*.part``,
  ``*.tmp``, ``*.partial``, ``*.filepart``, ``*.crdownload``, ``*.swp``, names ending in
  ``~``, dot files and dot folders) are ignored until renamed; so are ``*.json`` sidecars
  (they belong to their image) and the ``done/`` and ``failed/`` folders the ``move`` policy fills.
* **Safety.** A symbolic link whose target lies outside the drop folder is refused, and
  anything that is not a regular file (a pipe, a device) is ignored.
* **Ledger first.** The row is committed before the id is sent. A file whose content is
  already in the ledger is recorded ``skipped`` with the original's id and path. Files
  already recorded (same path, same size and mtime, or same content) are not recorded
  again, so rescans are harmless.
* **After scoring.** With ``USQA_AFTER_SCORING=move`` a file with a terminal row goes to
  ``done/`` (scored or skipped) or ``failed/`` under the drop folder, keeping its
  sub-folders; ``delete`` removes it; ``keep`` (default) leaves it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import db
from db import ledger
from db.models import FAILED, Scan
from worker import metrics
from worker.errors import ConfigError, TransientError
from worker.reconciler import reconcile

__all__ = ["Batcher", "Ingester", "is_ignored_name"]

log = logging.getLogger(__name__)

TEMP_SUFFIXES = (".part", ".tmp", ".partial", ".filepart", ".crdownload", ".swp", ".json")
DONE_DIR = "done"
FAILED_DIR = "failed"
_UNSENT_LIMIT = 100_000
_BURST_SECONDS = 0.02  # after the first event, how long to gather the events that follow it
FIRST_BATCH_FILES = 8  # files in the first batch of a burst: the decoder starts on them at once


def is_ignored_name(relative: str) -> bool:
    """Whether a path relative to the drop folder names a temporary, hidden or sidecar
    file, or lies in ``done/`` or ``failed/``."""
    parts = [p for p in relative.replace(os.sep, "/").split("/") if p]
    if not parts:
        return True
    if parts[0] in (DONE_DIR, FAILED_DIR) and len(parts) > 1:
        return True
    if any(p.startswith(".") for p in parts):
        return True
    name = parts[-1].lower()
    return name.endswith(TEMP_SUFFIXES) or name.endswith("~")


def _shown(path: str) -> str:
    """A path for a log line: control characters shown as ``?``."""
    return "".join(c if c.isprintable() else "?" for c in path)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:  # noqa: PTH123 - plain string paths throughout
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Batcher:
    """Collects scan ids and sends them in batches of ``size``, or sooner once the first
    id has waited ``linger`` seconds. A batch that cannot be sent (broker down) is kept
    and tried again; the ledger still has it as ``queued`` whatever happens."""

    def __init__(
        self,
        send: Callable[[list[int]], None],
        size: int,
        linger: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.send = send
        self.size = max(1, size)
        self.linger = max(0.0, linger)
        self.clock = clock
        self.buffer: list[int] = []
        self.first_at: float | None = None
        self.unsent: list[list[int]] = []
        self.retry_at = 0.0
        self.sent = 0

    def add(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        if not ids:
            return
        if not self.buffer:
            self.first_at = self.clock()
        self.buffer.extend(ids)
        while len(self.buffer) >= self.size:
            chunk, self.buffer = self.buffer[: self.size], self.buffer[self.size :]
            self._send(chunk)
        if not self.buffer:
            self.first_at = None

    def flush(self, force: bool = False) -> None:
        """Send the partial batch if it has lingered long enough (or ``force``), and retry
        batches that could not be sent before."""
        now = self.clock()
        if self.buffer and (
            force or (self.first_at is not None and now - self.first_at >= self.linger)
        ):
            chunk, self.buffer, self.first_at = self.buffer, [], None
            self._send(chunk)
        if self.unsent and now >= self.retry_at:
            pending, self.unsent = self.unsent, []
            for chunk in pending:
                self._send(chunk)

    @property
    def empty(self) -> bool:
        return not self.buffer and not self.unsent

    def _send(self, chunk: list[int]) -> None:
        try:
            self.send(chunk)
            self.sent += len(chunk)
        except Exception as exc:  # the broker is away: keep the ids, they are in the ledger
            if not self.unsent:
                log.warning(
                    "could not queue %d scan(s) (%s); retrying, and the ledger keeps them queued",
                    len(chunk),
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                )
            self.unsent.append(chunk)
            self.retry_at = self.clock() + 2.0
            if sum(len(c) for c in self.unsent) > _UNSENT_LIMIT:
                self.unsent.pop(0)  # the reconciler re-sends these from the ledger


@dataclass
class _Candidate:
    """A file seen but not taken yet, and since when it has looked the same."""

    size: int
    mtime_ns: int
    since: float
    seen: int = 1


class _Events:
    """The watchdog handler: only notes paths (and wakes the ingester loop); the loop does
    the work. ``settled`` keeps, per file, whether its latest event said it is complete
    (closed after writing, or renamed in) rather than still changing."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.paths: set[str] = set()
        self.dirs: set[str] = set()
        self.settled: dict[str, bool] = {}
        self.wake = threading.Event()

    def dispatch(self, event: Any) -> None:
        kind = getattr(event, "event_type", "")
        if kind in ("opened", "closed_no_write"):
            return
        source = os.fsdecode(event.src_path) if event.src_path else ""
        dest = os.fsdecode(event.dest_path) if getattr(event, "dest_path", "") else ""
        with self.lock:
            for target in (source, dest):
                if not target:
                    continue
                if event.is_directory:
                    if kind in ("created", "moved"):
                        self.dirs.add(target)
                    continue
                self.paths.add(target)
                if target == dest or kind == "closed":
                    self.settled[target] = True
                elif kind in ("created", "modified"):
                    self.settled[target] = False
                elif kind in ("deleted", "moved"):  # nothing left at that path
                    self.settled.pop(target, None)
        self.wake.set()

    def drain(self) -> tuple[set[str], set[str], dict[str, bool]]:
        with self.lock:
            paths, dirs, settled = self.paths, self.dirs, self.settled
            self.paths, self.dirs, self.settled = set(), set(), {}
        return paths, dirs, settled


def _event_filter() -> list[type[Any]]:
    """The watchdog events the ingester acts on. Asking for these alone keeps inotify from
    reporting every open and read-only close, which in the drop folder means every file
    hashed here and decoded by the scoring processes (four events per file, each handled
    by watchdog's threads for nothing)."""
    from watchdog import events

    return [
        events.FileCreatedEvent,
        events.FileModifiedEvent,
        events.FileClosedEvent,
        events.FileMovedEvent,
        events.FileDeletedEvent,
        events.DirCreatedEvent,
        events.DirMovedEvent,
        events.DirDeletedEvent,
    ]


def _inotify_observer() -> Any:
    """The platform's observer; on Linux with full move events, so a file renamed in from
    outside the drop folder is reported as moved (complete), not as created."""
    try:
        from watchdog.observers.inotify import InotifyObserver
    except ImportError:  # not Linux
        from watchdog.observers import Observer

        return Observer()
    return InotifyObserver(generate_full_events=True)


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
        self.root = str(root)
        self.real_root = os.path.realpath(self.root)
        self.settings = settings
        self.batcher = Batcher(
            send,
            settings.files_per_task if batch is None else batch,
            settings.linger_seconds if linger is None else linger,
        )
        self.reconcile_send = reconcile_send
        self.transport_empty = transport_empty
        self.tick_seconds = min(0.25, max(0.05, settings.stable_seconds / 4))
        self.pending: dict[str, _Candidate] = {}
        self.known: dict[str, tuple[int, int]] = {}
        self.refused: set[str] = set()
        self.recorded = 0
        self._events = _Events()
        self._settled: set[str] = set()  # files whose writer is done, by inotify
        self._trust_settled = settings.settle_on_close and not settings.polling
        self._observer: Any = None
        self._next_rescan = 0.0
        self._next_reconcile = 0.0
        self._next_disposal = 0.0
        self._db_failing = False
        self._dirs_to_walk: set[str] = set()

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start watching; the first tick walks the whole folder."""
        if self.settings.polling:
            from watchdog.observers.polling import PollingObserver

            observer: Any = PollingObserver(timeout=max(0.5, self.settings.stable_seconds / 2))
        else:
            observer = _inotify_observer()
        observer.schedule(self._events, self.root, recursive=True, event_filter=_event_filter())
        observer.daemon = True
        observer.start()
        self._observer = observer
        log.info(
            "watching %s (%s; files taken after %.1f s without change%s; after scoring: %s)",
            self.root,
            "polling" if self.settings.polling else "inotify",
            self.settings.stable_seconds,
            ", or once closed or renamed in" if self._trust_settled else "",
            self.settings.after_scoring,
        )

    def close(self) -> None:
        """Stop watching and send what is buffered."""
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
        self.batcher.flush(force=True)

    def run(self, stop: threading.Event, until_idle: Callable[[], bool] | None = None) -> None:
        """Tick until ``stop`` is set (or until ``until_idle()`` is true after a tick)."""
        self.start()
        try:
            while not stop.is_set():
                self.tick()
                if until_idle is not None and until_idle():
                    return
                # wake early when files arrive, so a closed file is taken within milliseconds
                if self._events.wake.wait(self.tick_seconds):
                    self._events.wake.clear()
                    stop.wait(_BURST_SECONDS)  # let the rest of a burst of events arrive
        finally:
            self.close()

    @property
    def idle(self) -> bool:
        """Nothing seen that is not recorded and sent yet."""
        return (
            not self.pending
            and self.batcher.empty
            and not self._dirs_to_walk
            and self._next_rescan > 0
        )

    # --- one tick ---------------------------------------------------------------------

    def tick(self) -> None:
        """Note events, rescan when due, take stable files, send, dispose and reconcile.
        Database outages are logged and retried on the next tick."""
        now = time.monotonic()
        paths, dirs, settled = self._events.drain()
        for path, done in settled.items():
            if done:
                self._settled.add(path)
            else:
                self._settled.discard(path)
        self._dirs_to_walk |= dirs
        try:
            if now >= self._next_rescan:
                self._walk(self.root)
                self._next_rescan = now + self.settings.rescan_seconds
            while self._dirs_to_walk:
                self._walk(self._dirs_to_walk.pop())
            for path in paths:
                self._see(path, now)
            ready = self._check(now)
            # a burst is recorded and sent a batch at a time, the first one small: scoring
            # starts on the first files while the rest are still being hashed and recorded
            start, step = 0, min(FIRST_BATCH_FILES, self.batcher.size)
            while start < len(ready):
                self._record(ready[start : start + step])
                self.batcher.flush()
                start, step = start + step, self.batcher.size
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

    # --- finding files ----------------------------------------------------------------

    def _relative(self, path: str) -> str | None:
        try:
            rel = os.path.relpath(path, self.root)
        except ValueError:
            return None
        if rel == os.curdir or rel.startswith(os.pardir + os.sep) or rel == os.pardir:
            return None
        return rel

    def _walk(self, top: str) -> None:
        now = time.monotonic()
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            rel_dir = self._relative(dirpath)
            if rel_dir is not None and is_ignored_name(f"{rel_dir}/x"):
                dirnames[:] = []
                continue
            dirnames[:] = [
                d for d in dirnames if not d.startswith(".") and not self._top_reserved(dirpath, d)
            ]
            for name in filenames:
                self._see(str(Path(dirpath) / name), now)

    def _top_reserved(self, dirpath: str, name: str) -> bool:
        return os.path.normpath(dirpath) == os.path.normpath(self.root) and name in (
            DONE_DIR,
            FAILED_DIR,
        )

    def _admissible(self, path: str) -> os.stat_result | None:
        """The file's stat if it may be taken: a regular file (or a link to one) inside
        the drop folder, with an ordinary name."""
        rel = self._relative(path)
        if rel is None or is_ignored_name(rel):
            return None
        try:
            link = os.lstat(path)
        except OSError:
            return None
        if stat.S_ISLNK(link.st_mode):
            target = os.path.realpath(path)
            if os.path.commonpath([target, self.real_root]) != self.real_root:
                if path not in self.refused:
                    self.refused.add(path)
                    log.warning(
                        "refused %s: it is a symbolic link to %s, outside the drop folder",
                        _shown(path),
                        _shown(target),
                    )
                return None
        try:
            st = Path(path).stat()
        except OSError:
            if stat.S_ISLNK(link.st_mode) and path not in self.refused:
                self.refused.add(path)
                log.warning(
                    "ignored %s: a symbolic link to a file that does not exist", _shown(path)
                )
            return None
        if not stat.S_ISREG(st.st_mode):
            if path not in self.refused:
                self.refused.add(path)
                log.warning("ignored %s: not a regular file", _shown(path))
            return None
        return st

    def _see(self, path: str, now: float) -> None:
        st = self._admissible(path)
        if st is None:
            self.pending.pop(path, None)
            self._settled.discard(path)
            return
        if self.known.get(path) == (st.st_size, st.st_mtime_ns):
            return
        candidate = self.pending.get(path)
        if candidate is None:
            self.pending[path] = _Candidate(st.st_size, st.st_mtime_ns, now)

    def _check(self, now: float) -> list[tuple[str, os.stat_result]]:
        """Candidates whose size and mtime have held still for the stability window."""
        stable = self.settings.stable_seconds
        wall = time.time()
        ready = []
        for path, cand in list(self.pending.items()):
            try:
                st = Path(path).stat()
            except OSError:
                del self.pending[path]
                self._settled.discard(path)
                continue
            if (st.st_size, st.st_mtime_ns) != (cand.size, cand.mtime_ns):
                self.pending[path] = _Candidate(st.st_size, st.st_mtime_ns, now)
                continue
            cand.seen += 1
            quiet = now - cand.since >= stable or (self._trust_settled and path in self._settled)
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

    def _record(self, ready: list[tuple[str, os.stat_result]]) -> None:
        url = self.settings.database_url
        paths = [p for p, _ in ready]
        with db.session_scope(url, readonly=True) as session:
            rows = ledger.known_files(session, paths)
            rows_view = {
                p: [(r.size_bytes, r.mtime_ns, r.sha256, self._still_there(r)) for r in rs]
                for p, rs in rows.items()
            }
        fresh: list[tuple[str, os.stat_result, str]] = []
        for path, st in ready:
            same = [r for r in rows_view.get(path, []) if r[3]]
            if any(r[0] == st.st_size and r[1] == st.st_mtime_ns for r in same):
                self._mark_known(path, st)
                continue
            try:
                digest = _sha256(path)
                after = Path(path).stat()
            except OSError as exc:
                log.warning("could not read %s to record it: %s", _shown(path), exc.strerror)
                self.pending.pop(path, None)
                self._settled.discard(path)
                continue
            if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
                continue  # changed while hashing: keep waiting
            if any(r[2] == digest for r in same):
                self._mark_known(path, st)
                continue
            fresh.append((path, st, digest))
        if not fresh:
            return
        with db.session_scope(url) as session:
            originals = ledger.find_originals(session, (d for _, st, d in fresh if st.st_size))
            received = ledger.record_received_many(
                session,
                [(path, st.st_size, st.st_mtime_ns, digest) for path, st, digest in fresh],
                originals=originals,
            )
        queued = [row.id for row in received if row.duplicate_of is None]
        for row in received:
            if row.duplicate_of is not None:
                log.info(
                    "scan %d skipped: %s",
                    row.id,
                    row.reason,
                    extra={"scan_id": row.id, "status": "skipped", "reason": row.reason},
                )
        for path, st, _ in fresh:
            self._mark_known(path, st)
        self.recorded += len(fresh)
        metrics.scan_received(len(fresh))
        for _ in range(len(fresh) - len(queued)):  # copies of known content: skipped at once
            metrics.scan_finished("skipped", reason="duplicate")
        log.debug("recorded %d file(s), %d queued", len(fresh), len(queued))
        self.batcher.add(queued)

    def _mark_known(self, path: str, st: os.stat_result) -> None:
        self.pending.pop(path, None)
        self._settled.discard(path)
        self.known[path] = (st.st_size, st.st_mtime_ns)

    # --- after scoring ----------------------------------------------------------------

    def _destination(self, scan: Scan) -> str:
        rel = os.path.relpath(scan.path, self.root)
        folder = FAILED_DIR if scan.status == FAILED else DONE_DIR
        dest = Path(self.root) / folder / rel
        if os.path.lexists(dest):
            dest = dest.with_name(f"{dest.stem}.{scan.id}{dest.suffix}")
        return str(dest)

    def _dispose(self) -> None:
        url = self.settings.database_url
        with db.session_scope(url, readonly=True) as session:
            scans = ledger.pending_disposal(session, self.root)
        if not scans:
            return
        done: list[tuple[int, str, str | None]] = []
        for scan in scans:
            try:
                done.append(self._dispose_one(scan))
            except OSError as exc:
                log.warning(
                    "could not %s %s after scoring: %s",
                    self.settings.after_scoring,
                    _shown(scan.path),
                    exc.strerror,
                )
                done.append((scan.id, "kept", None))
            self.known.pop(scan.path, None)
        with db.session_scope(url) as session:
            for scan_id, disposition, new_path in done:
                ledger.mark_disposed(session, scan_id, disposition, new_path)

    def _dispose_one(self, scan: Scan) -> tuple[int, str, str | None]:
        if not os.path.lexists(scan.path):
            return scan.id, "missing", None
        sidecar = scan.path + ".json"
        if self.settings.after_scoring == "delete":
            Path(scan.path).unlink()
            if os.path.lexists(sidecar):
                Path(sidecar).unlink()
            return scan.id, "deleted", None
        dest = self._destination(scan)
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        Path(scan.path).rename(dest)
        if os.path.lexists(sidecar):
            Path(sidecar).rename(dest + ".json")
        return scan.id, "moved", dest

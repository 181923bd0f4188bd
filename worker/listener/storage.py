"""Where received data sets go, and how each becomes durable before Success.

pynetdicom streams each data set (file meta first) to a temporary file in the hidden
``.usqa-incoming/`` folder of the drop folder, on the same filesystem (the ingester ignores
dot folders). :meth:`Store.keep` then, in this order: fsyncs it and hashes it; answers a
copy of content already in the ledger at once (nothing added: a resend after a timeout);
commits the ledger row under the file's final name; renames the file there and fsyncs the
folder; hands the scan id on. The final name is made from the content hash
(``dicom/ab/abcdef....dcm``), never from a DICOM field. A crash between the commit and the
rename leaves a complete file in the incoming folder that :meth:`Store.recover` moves into
place at the next start (it deletes the others: their sender never had Success and sends
them again).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import db
from db import ledger
from dicom_io.messages import printable
from worker.ops import metrics

__all__ = ["INCOMING", "Kept", "Store", "final_name", "sha256_file"]

log = logging.getLogger(__name__)

INCOMING = ".usqa-incoming"  # a dot folder: the ingester never looks inside
RECEIVED = "dicom"  # the received files' folder in the drop folder
DB_WAIT_S = 3.0  # the handler's longest database wait: a modality's timeout is often 10 s
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Kept:
    """What became of one data set: its path in the drop folder, its scan id (None for a
    copy of content already in the ledger: nothing was added) and its sha256."""

    path: str
    scan_id: int | None
    sha256: str


def sha256_file(path: str) -> str:
    """The file's sha256, as the ingester's hasher computes it (the whole file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def final_name(root: str, sha256: str) -> str:
    """The received file's path in the drop folder, from its content hash only."""
    return os.path.join(root, RECEIVED, sha256[:2], f"{sha256}.dcm")


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _KeyedLocks:
    """One lock per key (a content hash): two associations delivering the same content at
    once (a resend while the first is still being recorded) are recorded one after the
    other, so the second finds the first's row."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users <= 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


class Store:
    """Makes received files durable in the drop folder ``root`` and records them.
    ``send`` gets each new scan id (the in-process runner, or the broker)."""

    def __init__(self, root: str, settings: Any, send: Callable[[list[int]], None]) -> None:
        self.root = os.path.normpath(os.path.abspath(root))
        self.incoming = os.path.join(self.root, INCOMING)
        os.makedirs(self.incoming, mode=0o750, exist_ok=True)
        self.settings = settings
        self.send = send
        self._locks = _KeyedLocks()

    def keep(self, temp: str) -> Kept:
        """Make the fully received file ``temp`` (in :attr:`incoming`) durable and
        recorded. Raises OSError (disk full...) or TransientError (database down or
        locked): nothing is recorded then, and the sender should send again."""
        _fsync_file(temp)
        sha = sha256_file(temp)
        final = final_name(self.root, sha)
        with self._locks.hold(sha):
            with db.session_scope(self.settings.database_url, wait=DB_WAIT_S) as session:
                original = ledger.find_originals(session, [sha]).get(sha)
                if original is not None:
                    log.info(
                        "received again: content already recorded as scan %d (%s): nothing added",
                        original.id,
                        printable(original.path),
                    )
                    return Kept(original.path, None, sha)
                st = os.stat(temp)  # the rename keeps size, mtime, device and inode
                entry = ledger.ReceivedFile(
                    final, st.st_size, st.st_mtime_ns, sha, device=st.st_dev, inode=st.st_ino
                )
                (row,) = ledger.record_received_many(session, [entry], originals={})
            self._move_in(temp, final)
        metrics.scan_received(1)
        try:
            self.send([row.id])
        except Exception as exc:  # recorded: the reconciler sends it later
            log.warning("scan %d is recorded but could not be queued yet: %s", row.id, exc)
        return Kept(final, row.id, sha)

    def _move_in(self, temp: str, final: str) -> None:
        """Rename ``temp`` to ``final`` and make the rename durable (the row is
        committed: on failure the file stays in the incoming folder for :meth:`recover`)."""
        folder = os.path.dirname(final)
        os.makedirs(folder, exist_ok=True)
        os.chmod(temp, 0o640)
        os.replace(temp, final)
        _fsync_dir(folder)
        _fsync_dir(os.path.dirname(folder))

    def recover(self) -> int:
        """At start: move in the complete files whose row was committed before a crash;
        delete the rest of the incoming folder. How many were moved in."""
        moved = 0
        for name in sorted(os.listdir(self.incoming)):
            path = os.path.join(self.incoming, name)
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            sha = sha256_file(path)
            final = final_name(self.root, sha)
            with db.session_scope(self.settings.database_url, readonly=True) as session:
                rows = ledger.known_files(session, [final]).get(final, [])
            if any(r.sha256 == sha for r in rows) and not os.path.exists(final):
                self._move_in(path, final)
                moved += 1
                log.warning("moved in %s, recorded before the last stop", printable(final))
            else:
                os.unlink(path)
        return moved

    def temporary_file(self, **kwargs: Any) -> Any:
        """A named temporary file in :attr:`incoming` (pynetdicom's chunked receive)."""
        import tempfile

        kwargs.setdefault("prefix", "rx-")
        return tempfile.NamedTemporaryFile(dir=self.incoming, **kwargs)

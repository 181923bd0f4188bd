"""After scoring: move a file to ``done/``/``failed/``, or delete it, safely.

Every step goes through directory file descriptors opened with ``O_NOFOLLOW`` from the drop
folder down, so no symbolic link, whether planted in ``done/`` or ``failed/`` or swapped in
for a sub-folder after the file was received, can carry a move or a delete outside the
folder. The file is acted on only if it is still the one that was scored: same size and
modification time and, for rows that have them, the same device and inode. A file replaced
since is left alone (it is recorded as a new scan and disposed of for itself).
:func:`dispose_scored` runs the policy over every terminal row not disposed of yet.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import db
from db import ledger, paths
from db.models import FAILED, Scan
from dicom_io.messages import printable
from worker.ingest.names import DONE_DIR, FAILED_DIR

__all__ = ["Disposal", "dispose", "dispose_scored"]

log = logging.getLogger("worker.ingest.ingester")  # one logger for the ingester's lines

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class Disposal:
    """What was done with one scan's file: ``disposition`` (deleted, moved, missing,
    replaced, refused, kept), where it went, and a message for the log (None: say nothing)."""

    scan_id: int
    disposition: str
    new_path: str | None = None
    message: str | None = None


class _RefusedError(Exception):
    pass


def _open_dirs(root: str, parts: list[str], *, create: bool = False) -> int:
    """A descriptor of ``root/parts...``, each part opened without following a link
    (``create``: making the missing ones). FileNotFoundError when a part is missing;
    _RefusedError when one is a link or not a folder."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=fd)
            try:
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _RefusedError(
                        f"{printable(part)} on the way is a symbolic link or not a folder"
                    ) from exc
                raise
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lexists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _same_file(scan: Scan, st: os.stat_result) -> bool:
    if (st.st_size, st.st_mtime_ns) != (scan.size_bytes, scan.mtime_ns):
        return False
    if scan.file_device is None or scan.file_inode is None:
        return True  # recorded before usqa kept the inode: size and mtime must do
    return ledger.file_identity(st.st_dev, st.st_ino) == (scan.file_device, scan.file_inode)


def _free_name(name: str, scan_id: int, dir_fd: int) -> str:
    if not _lexists(name, dir_fd):
        return name
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}.{scan_id}.{suffix}" if dot and stem else f"{name}.{scan_id}"


def dispose(root: str, scan: Scan, policy: str) -> Disposal:
    """Apply ``policy`` (``move`` or ``delete``) to the file of one terminal ``scan``."""
    path = paths.fs_path(scan.path, scan.path_bytes)
    rel = os.path.relpath(path, root)
    if rel.startswith(os.pardir) or os.path.isabs(rel):
        return Disposal(scan.id, "refused", None, "it is not inside the drop folder")
    *folders, name = rel.split(os.sep)
    try:
        src = _open_dirs(root, folders)
    except FileNotFoundError:
        return Disposal(scan.id, "missing")
    except _RefusedError as exc:
        return Disposal(scan.id, "refused", None, f"left in place: {exc}")
    try:
        try:
            entry = os.stat(name, dir_fd=src, follow_symlinks=False)
        except FileNotFoundError:
            return Disposal(scan.id, "missing")
        st = entry
        if stat.S_ISLNK(entry.st_mode):  # an alias of a file inside: its target was scored
            try:
                st = os.stat(name, dir_fd=src)
            except OSError:
                return Disposal(scan.id, "replaced", None, _REPLACED)
        if not stat.S_ISREG(st.st_mode) or not _same_file(scan, st):
            return Disposal(scan.id, "replaced", None, _REPLACED)
        sidecar = name + ".json"
        if policy == "delete":
            os.unlink(name, dir_fd=src)
            if _lexists(sidecar, src):
                os.unlink(sidecar, dir_fd=src)  # a link or a pipe: only the entry goes
            return Disposal(scan.id, "deleted")
        top = FAILED_DIR if scan.status == FAILED else DONE_DIR
        try:
            dst = _open_dirs(root, [top, *folders], create=True)
        except _RefusedError as exc:
            return Disposal(scan.id, "refused", None, f"not moved: {exc}")
        try:
            target = _free_name(name, scan.id, dst)
            os.rename(name, target, src_dir_fd=src, dst_dir_fd=dst)
            if _lexists(sidecar, src):
                side = _free_name(target + ".json", scan.id, dst)
                os.rename(sidecar, side, src_dir_fd=src, dst_dir_fd=dst)
        finally:
            os.close(dst)
        return Disposal(scan.id, "moved", os.path.join(root, top, *folders, target))
    finally:
        os.close(src)


_REPLACED = (
    "left in place: the file there now is not the one that was scored (replaced or changed "
    "since); it is recorded as a new scan"
)


def dispose_scored(root: str, settings: Any, known: MutableMapping[str, Any]) -> None:
    """Apply ``USQA_AFTER_SCORING`` to each scan under ``root`` with a terminal row not
    disposed of yet, forget its path in ``known``, and record what was done."""
    url = settings.database_url
    policy = settings.after_scoring
    with db.session_scope(url, readonly=True) as session:
        # a file to delete waits for its structured report, which is built from it
        scans = ledger.pending_disposal(session, root, after_reports=policy == "delete")
    if not scans:
        return
    done: list[Disposal] = []
    for scan in scans:
        try:
            outcome = dispose(root, scan, policy)
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
        known.pop(paths.fs_path(scan.path, scan.path_bytes), None)
    with db.session_scope(url) as session:
        for outcome in done:
            ledger.mark_disposed(session, outcome.scan_id, outcome.disposition, outcome.new_path)

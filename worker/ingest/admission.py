"""Admission: may a path in the drop folder be taken as a scan?

A candidate must lie inside the drop folder once every link is resolved: nothing under a
symbolic link to a folder is taken (such folders are never walked, and with inotify their
events are refused here), a symbolic link to a file must point inside the folder, and the
file must be a regular file with a single hard link (another name for it may lie outside
the folder: a hard link to a file the depositor could not read would be read here), and
its path must fit in the ledger (db/paths.MAX_TEXT_BYTES). The
answer is the file's ``stat``, ``None`` (not a scan: a temporary name, gone) or a
:class:`Refusal` with the reason, which the ingester logs once.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from db import paths
from dicom_io.messages import printable
from worker.ingest.names import is_ignored_name

__all__ = ["Folder", "Refusal"]


@dataclass(frozen=True)
class Refusal:
    """Why a path is not taken (for the log line)."""

    reason: str


class Folder:
    """The drop folder as the admission rules see it."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.real_root = os.path.realpath(root)

    def relative(self, path: str) -> str | None:
        """``path`` relative to the folder, or None when it is not below it."""
        try:
            rel = os.path.relpath(path, self.root)
        except ValueError:
            return None
        if rel in (os.curdir, os.pardir) or rel.startswith(os.pardir + os.sep):
            return None
        return rel

    def inside(self, real: str) -> bool:
        """Whether a resolved path lies inside the (resolved) drop folder."""
        return real == self.real_root or real.startswith(self.real_root.rstrip(os.sep) + os.sep)

    def real_folder(self, rel_dir: str) -> bool:
        """Whether the folder ``rel_dir`` (relative) is reached without any symbolic link."""
        expected = os.path.normpath(os.path.join(self.real_root, rel_dir))
        return os.path.realpath(os.path.join(self.root, rel_dir)) == expected

    def admit(self, path: str, *, walked: bool = False) -> os.stat_result | Refusal | None:
        """The file's ``stat`` (of the link's target for a link to a file inside), a
        :class:`Refusal`, or None for a name that is not a scan or a file that is gone.
        ``walked``: found by the walk, whose folders are known to be real ones."""
        rel = self.relative(path)
        if rel is None or is_ignored_name(rel):
            return None
        try:
            link = os.lstat(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return Refusal(f"it cannot be examined ({exc.strerror or exc})")
        length = len(paths.ledger_path(path)[0].encode("utf-8"))
        if length > paths.MAX_TEXT_BYTES:
            return Refusal(
                f"its path takes {length} bytes as the ledger stores it (a byte that is not "
                "UTF-8 or a control character takes four), over the "
                f"{paths.MAX_TEXT_BYTES} the ledger can index: shorten the folder or file names"
            )
        if not walked and not self.real_folder(os.path.dirname(rel)):
            return Refusal(
                "it lies under a symbolic link to a folder; folders behind links are never "
                "taken: copy or move the files into the drop folder itself"
            )
        if stat.S_ISLNK(link.st_mode):
            target = os.path.realpath(path)
            if not self.inside(target):
                return Refusal(
                    f"it is a symbolic link to {printable(target)}, outside the drop folder; copy "
                    "the file in instead"
                )
            try:
                st = os.stat(path)
            except OSError:
                return Refusal("it is a symbolic link to a file that does not exist")
            if stat.S_ISDIR(st.st_mode):
                return Refusal(
                    "it is a symbolic link to a folder; folders behind links are never walked"
                )
        else:
            st = link
        if not stat.S_ISREG(st.st_mode):
            return Refusal("it is not a regular file (a pipe, a device or a socket)")
        if st.st_nlink > 1:
            return Refusal(
                f"it has {st.st_nlink} hard links; another name of a hard-linked file may lie "
                "outside the drop folder, so such files are not read: copy the file in instead "
                "of linking it"
            )
        return st

"""A walk of the drop folder that is done a slice at a time, never follows a link and
cannot loop.

The walk is depth first over ``os.scandir`` iterators, so it holds one open directory per
level (not a listing of the whole tree, nor of one huge directory). Symbolic links are
reported as entries, never entered; a directory that is already on the way down (a bind
mount of a parent) is not entered again, and nothing deeper than :data:`MAX_DEPTH` levels
is walked. Problems with a directory (no permission, gone) are reported to ``refuse`` and
the walk goes on.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

__all__ = ["MAX_DEPTH", "Walk"]

MAX_DEPTH = 64


def _close(entries: Iterator[os.DirEntry[str]]) -> None:
    close = getattr(entries, "close", None)
    if close is not None:
        close()


@dataclass
class _Level:
    path: str
    entries: Iterator[os.DirEntry[str]]
    identity: tuple[int, int]


@dataclass
class Walk:
    """One pass over the tree below ``top``. ``enter(path, name)`` says whether a
    sub-directory may be walked (hidden, ``done/``...); ``refuse(path, reason)`` hears of
    directories that are not walked for a reason worth logging."""

    top: str
    enter: Callable[[str, str], bool]
    refuse: Callable[[str, str], None]
    full: bool = False  # a walk of the whole drop folder (a rescan), not of one new folder
    entries: int = 0
    files: int = 0
    new: int = 0
    started: float = field(default_factory=time.monotonic)
    _stack: list[_Level] = field(default_factory=list)
    _opened: bool = False

    @property
    def done(self) -> bool:
        return self._opened and not self._stack

    def close(self) -> None:
        """Release the open directories (a walk given up)."""
        for level in self._stack:
            _close(level.entries)
        self._stack.clear()
        self._opened = True

    def _push(self, path: str, identity: tuple[int, int] | None = None) -> None:
        if len(self._stack) >= MAX_DEPTH:
            self.refuse(path, f"folder nesting deeper than {MAX_DEPTH} levels is not walked")
            return
        try:
            if identity is None:
                st = os.stat(path, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    return
                identity = (st.st_dev, st.st_ino)
            if any(level.identity == identity for level in self._stack):
                self.refuse(path, "this folder is one of its own parents (a bind mount loop)")
                return
            entries = os.scandir(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            self.refuse(path, f"the folder cannot be listed ({exc.strerror or exc})")
            return
        self._stack.append(_Level(path, entries, identity))

    def step(self, limit: int, deadline: float) -> list[tuple[str, os.DirEntry[str]]]:
        """Up to ``limit`` non-directory entries (files, links, pipes...), stopping early at
        ``deadline`` (``time.monotonic``). Empty once the walk is done."""
        if not self._opened:
            self._opened = True
            self._push(self.top)
        found: list[tuple[str, os.DirEntry[str]]] = []
        while self._stack and len(found) < limit:
            if self.entries % 256 == 0 and time.monotonic() >= deadline:
                break
            level = self._stack[-1]
            try:
                entry = next(level.entries)
            except StopIteration:
                self._stack.pop()
                continue
            except OSError as exc:  # the folder went away or the share stalled
                self.refuse(level.path, f"listing stopped ({exc.strerror or exc})")
                self._stack.pop()
                _close(level.entries)
                continue
            self.entries += 1
            path = os.path.join(level.path, entry.name)
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                if self.enter(level.path, entry.name):
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    self._push(path, (st.st_dev, st.st_ino))
                continue
            self.files += 1
            found.append((path, entry))
        return found

"""The watchdog side of the ingester: an inotify observer that only notes paths.

Polling (``USQA_POLLING``) uses no observer: the ingester's own bounded walk, repeated,
is the poll (watchdog's polling observer keeps a snapshot of the whole tree in memory and
follows links to folders, so two links to ``.`` kept it walking for ever).
"""

from __future__ import annotations

import os
import threading
from typing import Any

__all__ = ["MAX_EVENT_PATHS", "Events", "event_filter", "inotify_observer"]

# Paths noted between two ticks. Past this the rest are dropped and the ingester walks the
# whole folder instead (like inotify's own queue overflow), so memory stays bounded.
MAX_EVENT_PATHS = 50_000


class Events:
    """The watchdog handler: only notes paths (and wakes the ingester loop); the loop does
    the work. ``settled`` keeps, per file, whether its latest event said it is complete
    (closed after writing, or renamed in) rather than still changing."""

    def __init__(self, limit: int = MAX_EVENT_PATHS) -> None:
        self.lock = threading.Lock()
        self.limit = limit
        self.paths: set[str] = set()
        self.dirs: set[str] = set()
        self.settled: dict[str, bool] = {}
        self.overflowed = False
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
                if len(self.paths) + len(self.dirs) >= self.limit:
                    self.overflowed = True
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

    def drain(self) -> tuple[set[str], set[str], dict[str, bool], bool]:
        """The paths, folders and settled flags noted since the last call, and whether some
        were dropped (then the whole folder must be walked)."""
        with self.lock:
            paths, dirs, settled, over = self.paths, self.dirs, self.settled, self.overflowed
            self.paths, self.dirs, self.settled, self.overflowed = set(), set(), {}, False
        return paths, dirs, settled, over

    @property
    def waiting(self) -> bool:
        with self.lock:
            return bool(self.paths or self.dirs)


def event_filter() -> list[type[Any]]:
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


def inotify_observer() -> Any:
    """The platform's observer; on Linux with full move events, so a file renamed in from
    outside the drop folder is reported as moved (complete), not as created."""
    try:
        from watchdog.observers.inotify import InotifyObserver
    except ImportError:  # not Linux
        from watchdog.observers import Observer

        return Observer()
    return InotifyObserver(generate_full_events=True)

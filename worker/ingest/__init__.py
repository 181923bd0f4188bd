"""The ingester: watches the drop folder, records each complete file in the ledger, then
queues its id. Nothing in the folder can stop it, reach outside the folder, or lose a scan.
Its loop and the schedule of one tick are ingester.py's; the bounds are limits.py's.

* **Finding files.** A watchdog inotify observer reports changes, recursively. A walk of
  the whole folder at start-up and every ``USQA_RESCAN_SECONDS`` catches what events
  missed; a folder moved in is walked at once. With ``USQA_POLLING=1`` (NFS/SMB shares,
  where inotify sees nothing) there is no observer: the walk itself is repeated every
  ``max(0.5, USQA_STABLE_SECONDS / 2)`` seconds. The walk never follows a symbolic link,
  cannot loop (bind mounts included) and is done a slice at a time (walker.py); which
  walks run, and when, is finding.py's.
* **Admission** (admission.py). A candidate must lie inside the drop folder with every link
  resolved: nothing under a symbolic link to a folder, a link to a file only when the file
  is inside, a regular file (no pipe, device or socket) with one hard link. Refusals are
  logged once, with the reason. Temporary names (``*.part``, ``*.tmp``, ``*.partial``,
  ``*.filepart``, ``*.crdownload``, ``*.swp``, names ending in ``~``, dot files and dot
  folders) are ignored until renamed; so are ``*.json`` sidecars (they belong to their
  image) and the ``done/`` and ``failed/`` folders the ``move`` policy fills.
* **Complete files only** (candidates.py). A file is taken once its size and mtime have not
  changed for ``USQA_STABLE_SECONDS``, or at once when inotify's last word on it is that its
  writer closed it (IN_CLOSE_WRITE) or that it was renamed into the folder
  (``USQA_SETTLE_ON_CLOSE``, on by default; never when polling). A file that changes after
  it was taken is recorded again as a new scan, so an early take loses nothing.
* **Bounded work.** A file over ``USQA_MAX_FILE_BYTES`` is recorded ``failed`` at once,
  unread. Hashing runs in background threads, large files in a lane of their own
  (hasher.py), so no file waits behind a big one and the loop (events, heartbeats,
  SIGTERM) never waits for a read. One tick walks or checks for at most a fraction of a
  second; the files waiting, remembered and refused, and the events noted between ticks,
  are capped (limits.py; the events in events.py), so a restart over a folder of a
  million kept files costs one ledger lookup per 500 files and flat memory, and logs its
  progress.
* **Ledger first** (recording.py). The row is committed before the id is sent. A file whose
  content is already in the ledger is recorded ``skipped`` with the original's id and path.
  Files already recorded (same path, same size and mtime, or same content) are not recorded
  again, so rescans are harmless. A name that is not valid UTF-8 or holds control characters
  is stored in its escaped text form with its original bytes (db/paths.py) and scored like
  any other.
* **One error boundary per file.** Whatever goes wrong with one path is logged once and
  the file is recorded or refused with a reason; the ingester goes on with the next.
* **After scoring** (disposal.py). With ``USQA_AFTER_SCORING=move`` a file with a terminal
  row goes to ``done/`` (scored or skipped) or ``failed/`` under the drop folder, keeping
  its sub-folders; ``delete`` removes it; ``keep`` (default) leaves it. Only a file that is
  still the one scored is acted on, and never through a symbolic link.
"""

from worker.ingest.batcher import Batcher
from worker.ingest.ingester import Ingester
from worker.ingest.names import is_ignored_name

__all__ = ["Batcher", "Ingester", "is_ignored_name"]

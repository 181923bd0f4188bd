"""The DICOM front door: a Storage SCP (C-STORE and C-ECHO) that writes what scanners and
PACS send into the drop folder and records it, so the ingest and scoring paths take it
from there.

- :mod:`~worker.listener.contexts`: every storage SOP class, lossless transfer syntaxes
  first.
- :mod:`~worker.listener.storage`: streamed to the drop folder's filesystem, fsynced,
  recorded, renamed in (a name from the content hash), then Success; resends add nothing.
- :mod:`~worker.listener.handlers`: the status each outcome answers (0xA700 for anything
  that may pass, so the sender retries).
- :mod:`~worker.listener.server`: the address allow-list and TLS off the accept loop.
- :mod:`~worker.listener.listener`: start and stop; :mod:`~worker.listener.service`: the
  ``usqa listen`` process.

One listener per drop folder (its incoming folder is its own).
"""

from worker.listener.listener import Listener

__all__ = ["Listener"]

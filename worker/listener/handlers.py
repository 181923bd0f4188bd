"""The C-STORE handler: what the sender is answered, and when.

Success (0x0000) only once the file is fsynced in the drop folder and its ledger row is
committed (or its content was already there: a resend adds nothing). Anything that may
pass (disk full, the database down or locked, any unexpected error) answers 0xA700 "out
of resources", so the sender keeps the image and sends it again. A refusal (0xC000 range,
the sender gives up) only for data that will never be accepted: a data set larger than
USQA_MAX_FILE_BYTES.
"""

from __future__ import annotations

import errno
import logging
import os
from typing import Any

from pydicom.dataset import Dataset

from dicom_io.messages import first_line, printable
from worker.errors import TransientError
from worker.listener.storage import Store

__all__ = ["OUT_OF_RESOURCES", "REFUSED", "SUCCESS", "handle_store"]

log = logging.getLogger(__name__)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
REFUSED = 0xC000  # "cannot understand": a failure the sender does not retry

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _status(code: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = code
    ds.ErrorComment = comment[:64]  # LO: 64 characters at most
    return ds


def _peer(event: Any) -> str:
    req = event.assoc.requestor
    return f"{req.ae_title}@{req.address}:{req.port}"


def handle_store(event: Any, store: Store) -> int | Dataset:
    """``evt.EVT_C_STORE``: keep the streamed data set, then answer."""
    temp = os.fspath(event.dataset_path)
    peer = _peer(event)
    try:
        size = os.stat(temp).st_size
        if size > store.settings.max_file_bytes:
            log.warning(
                "refused a %d-byte data set from %s: over USQA_MAX_FILE_BYTES (%d)",
                size,
                peer,
                store.settings.max_file_bytes,
            )
            return _status(REFUSED, "larger than the receiver's USQA_MAX_FILE_BYTES")
        kept = store.keep(temp)
    except TransientError as exc:
        log.warning("answered 0xA700 to %s (the sender retries): %s", peer, first_line(exc))
        return _status(OUT_OF_RESOURCES, "database unavailable; send again later")
    except OSError as exc:
        full = exc.errno in _DISK_FULL
        log.warning(
            "answered 0xA700 to %s (the sender retries): %s%s",
            peer,
            "the drop folder's disk is full: " if full else "",
            first_line(exc),
        )
        return _status(OUT_OF_RESOURCES, "disk full" if full else "storage error; send again")
    except Exception:
        log.exception("answered 0xA700 to %s after an unexpected error", peer)
        return _status(OUT_OF_RESOURCES, "receiver error; send again later")
    if kept.scan_id is None:
        return SUCCESS
    log.info("received %s from %s: scan %d", printable(kept.path), peer, kept.scan_id)
    return SUCCESS

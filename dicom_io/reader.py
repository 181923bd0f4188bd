"""The entry point: :func:`read` a file into a :class:`~dicom_io.scan.Scan`, header first.

The kind is found from the content, never the extension: a DICOM preamble (``DICM`` at byte
128) or a dataset that starts with a group 0002/0008 element, the PNG signature, or the JPEG
start-of-image marker. Every problem is raised as one :class:`worker.errors.InputError`
whose one-line message names the file.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Literal

from dicom_io.header import read_dicom
from dicom_io.images import read_image
from dicom_io.messages import first_line, shown, stalled, storage_unavailable
from dicom_io.options import ReadOptions
from dicom_io.scan import Scan
from worker.errors import (
    CorruptFileError,
    FileUnavailableError,
    InputError,
    UnreadableFileError,
    UnsupportedFileError,
    UsqaError,
)

__all__ = ["detect_kind", "read"]

log = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
# First two bytes of a DICOM dataset written without preamble: group 0x0002 or 0x0008,
# little or big endian.
_BARE_DICOM_STARTS = (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")

Kind = Literal["dicom", "image"]


def detect_kind(head: bytes) -> Kind | None:
    """``dicom``, ``image`` or None from the first 132 bytes of a file."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(PNG_SIGNATURE) or head.startswith(JPEG_SIGNATURE):
        return "image"
    if len(head) >= 8 and head[:2] in _BARE_DICOM_STARTS:
        return "dicom"
    return None


def _open_check(path: Path, name: str) -> bytes:
    """The first 132 bytes, after checking the path is a readable, non-empty regular file."""
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        if path.is_symlink():
            raise UnreadableFileError(
                f"{name}: is a symbolic link to a file that does not exist (dangling link)"
            ) from exc
        raise UnreadableFileError(f"{name}: does not exist") from exc
    except PermissionError as exc:
        raise UnreadableFileError(
            f"{name}: permission denied; give the usqa user read access to it"
        ) from exc
    except OSError as exc:
        raise _unreadable(name, exc) from exc
    if stat.S_ISDIR(info.st_mode):
        raise UnreadableFileError(f"{name}: is a folder, not a file; give the files inside it")
    if not stat.S_ISREG(info.st_mode):
        raise UnreadableFileError(f"{name}: is not a regular file (a device, pipe or socket)")
    if info.st_size == 0:
        raise CorruptFileError(
            f"{name}: is empty (0 bytes); the copy may have failed or still be in progress"
        )
    try:
        with path.open("rb") as f:
            return f.read(132)
    except PermissionError as exc:
        raise UnreadableFileError(
            f"{name}: permission denied; give the usqa user read access to it"
        ) from exc
    except OSError as exc:
        raise _unreadable(name, exc) from exc


def _unreadable(name: str, exc: OSError) -> UsqaError:
    """The error for an OSError: transient for a share that did not answer, else final."""
    if stalled(exc):
        return storage_unavailable(name, exc)
    return UnreadableFileError(f"{name}: cannot be read ({first_line(exc)})")


def read(path: str | os.PathLike[str], options: ReadOptions | None = None) -> Scan:
    """Read the header of a DICOM, PNG or JPEG file and check it against ``options``.

    Nothing is decoded here except what the header needs; frames are decoded by
    :meth:`Scan.iter_frames`. Raises :class:`worker.errors.InputError` subclasses, or
    :class:`worker.errors.FileUnavailableError` when the storage did not answer (EIO,
    ESTALE, ETIMEDOUT: a stalled share; worth another try later).
    """
    opts = options or ReadOptions()
    file = Path(path)
    name = shown(file)
    head = _open_check(file, name)
    kind = detect_kind(head)
    try:
        if kind == "dicom":
            scan = read_dicom(file, opts)
        elif kind == "image":
            scan = read_image(file, opts)
        else:
            raise UnsupportedFileError(
                f"{name}: is not a DICOM, PNG or JPEG file (no DICM marker at byte 128 and no "
                f"image signature; it starts with {head[:8].hex(' ')})"
            )
    except FileUnavailableError:
        raise  # a stalled share: the scan is retried later, not failed
    except InputError as exc:
        message = str(exc)
        if shown(message) != message:  # text taken from a damaged file: keep one line
            raise type(exc)(shown(message)) from exc
        raise
    except Exception as exc:  # the boundary: nothing but InputError leaves this function
        log.debug("unexpected error reading %s", name, exc_info=True)
        raise CorruptFileError(f"{name}: cannot be read ({first_line(exc)})") from exc
    log.debug("%s: %r", name, scan)
    return scan

"""Small helpers that keep every error message on one line and name the file safely."""

from __future__ import annotations

import errno
import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from worker.errors import FileUnavailableError

__all__ = [
    "OUT_OF_MEMORY",
    "STALLED_ERRNOS",
    "first_line",
    "quiet_warnings",
    "shown",
    "stalled",
    "storage_unavailable",
]

log = logging.getLogger(__name__)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


_UNDECODABLE = re.compile("[\udc80-\udcff]")  # os.fsdecode's stand-ins for bytes 0x80-0xFF


OUT_OF_MEMORY = (
    "does not fit in the memory the decoder may use (USQA_DECODER_MEMORY); it may be a "
    "decompression bomb; raise the limit only if such files are expected"
)

# what a stalling or failing network share answers: worth another try later, unlike ENOENT
STALLED_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("EIO", "ESTALE", "ETIMEDOUT", "EAGAIN", "EINTR", "EHOSTDOWN", "EHOSTUNREACH",
                 "ENETDOWN", "ENETUNREACH", "ECONNRESET", "ECONNABORTED", "ENOLINK", "ECOMM",
                 "EREMOTEIO")
    if hasattr(errno, name)
)  # fmt: skip


def stalled(exc: BaseException) -> bool:
    """Whether ``exc`` is an OSError of storage that did not answer (see STALLED_ERRNOS)."""
    return isinstance(exc, OSError) and exc.errno in STALLED_ERRNOS


def storage_unavailable(where: str, exc: BaseException) -> FileUnavailableError:
    """The transient error for storage that did not answer (``stalled(exc)``): the scan is
    tried again later, never failed for it."""
    return FileUnavailableError(
        f"{where}: the storage did not answer ({first_line(exc)}); retried later"
    )


def shown(path: Path | str) -> str:
    """The path as the user gave it, with control characters replaced so it stays one line
    and bytes that are not valid UTF-8 shown as ``\\xHH`` (as the ledger stores them)."""
    text = _CONTROL.sub("?", str(path))
    return _UNDECODABLE.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02x}", text)


def first_line(exc: BaseException, limit: int = 200, kind: bool = True) -> str:
    """A one-line summary of an exception: its type (unless ``kind`` is False) and first
    message line; the type alone when it has no message."""
    text = str(exc).strip().splitlines()
    message = _CONTROL.sub(" ", text[0]).strip() if text else ""
    if len(message) > limit:
        message = message[: limit - 3] + "..."
    name = type(exc).__name__
    if not message:
        return name
    return f"{name}: {message}" if kind else message


@contextmanager
def quiet_warnings(name: str) -> Iterator[None]:
    """Keep library warnings (pydicom, Pillow) off the console; log them at DEBUG instead."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        log.debug("%s: %s", name, _CONTROL.sub(" ", str(w.message)))

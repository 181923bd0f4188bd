"""Small helpers that keep every message on one line and name the file safely.

:func:`printable` is usqa's one way to make text printable (a file name, a header value
or an exception's text in a log line, a reason, a report): ``db.paths`` stores paths in
its reversible form on top of it, and the log formatter, the ingester and the reports use
it. It lives here, the lowest package that ``db`` and ``worker`` both import.
:func:`first_line` is the one summary of an exception for a message, :func:`shown_url`
the one way to hide a password in a URL (a database or a broker)."""

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
    "printable",
    "quiet_warnings",
    "shown",
    "shown_url",
    "stalled",
    "storage_unavailable",
]

log = logging.getLogger(__name__)

_UNDECODABLE = range(0xDC80, 0xDD00)  # os.fsdecode's stand-ins for bytes 0x80-0xFF


# scheme://user: (the password, if any, follows)
_USER_INFO = re.compile(r"[A-Za-z][\w+.-]*://[^:/@;]*:")

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


def printable(text: str, replace: str | None = None) -> str:
    """``text`` safe for one log line, terminal, report or database column: each byte that
    is not valid UTF-8 (``os.fsdecode``'s stand-in) as ``\\xHH``, each other character
    that is not printable (control, format, separator: ``\\n``, ESC, U+202E) as
    ``\\uHHHH`` or ``\\UHHHHHHHH``, or as ``replace`` when given; everything else,
    backslashes too, unchanged (not reversible: :func:`db.paths.escape` is)."""
    if text.isprintable():
        return text
    return "".join(_printable_char(c, replace) for c in text)


def _printable_char(char: str, replace: str | None) -> str:
    code = ord(char)
    if code in _UNDECODABLE:
        return f"\\x{code - 0xDC00:02x}"
    if char.isprintable():
        return char
    if replace is not None:
        return replace
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def shown(path: Path | str) -> str:
    """The path as the user gave it, for a message: one line (a character that is not
    printable shown as ``?``), bytes that are not valid UTF-8 as ``\\xHH`` (as the ledger
    stores them)."""
    return printable(str(path), replace="?")


def shown_url(url: str) -> str:
    """The URL with any password hidden (``***``), for messages and logs: a database URL,
    or a broker URL, several of them joined by ``;`` (kombu's failover list) too. The one
    place usqa hides a password (the database and the broker: ``db.session`` re-exports it).
    The password ends at the last ``@`` before the host, as redis-py reads it, or at the
    first ``@``, as SQLAlchemy does, whichever hides more."""
    return ";".join(_hide_password(part) for part in url.split(";"))


def _hide_password(url: str) -> str:
    head = _USER_INFO.match(url)
    if head is None:
        return url
    rest = url[head.end() :]
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    ends = [at for at in (netloc.rfind("@"), rest.find("@")) if at >= 0]
    return f"{url[: head.end()]}***{rest[max(ends) :]}" if ends else url


def first_line(exc: BaseException, limit: int = 200, kind: bool = True) -> str:
    """A one-line summary of an exception: its type (unless ``kind`` is False) and first
    message line; the type alone when it has no message."""
    text = str(exc).strip().splitlines()
    message = printable(text[0], replace=" ").strip() if text else ""
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
        log.debug("%s: %s", name, printable(str(w.message), replace=" "))

"""How file paths are stored in the ledger: always as valid, printable text.

A POSIX file name is bytes. Python reads a name that is not valid UTF-8 (``café.png``
written by a Latin-1 client: ``caf\\xe9.png``) as a ``str`` with lone surrogates
(``os.fsdecode``), which no database driver can store, and a name may hold control
characters (a newline, an escape sequence) that must never reach a terminal raw.

The ledger's ``path`` column therefore holds the **escaped text form** of such a name, and
``path_bytes`` its original bytes (NULL for every ordinary name, which is stored as it is):

* an ordinary name (valid UTF-8, every character printable: ``str.isprintable()``, and
  no backslash) is stored unchanged;
* any other name is escaped: each byte that is not valid UTF-8 becomes ``\\xHH``, each
  character that is not printable (control, format, separator characters such as ``\\n``,
  U+202E) becomes ``\\uHHHH`` (or ``\\UHHHHHHHH``), and a backslash becomes ``\\\\``; every
  other character stays as it is. :func:`unescape` inverts it exactly.

An escaped name always holds a backslash and a stored-as-is one never does, so two files
never share one text form (``caf\\xe9.png`` spelt with a real backslash is stored as
``caf\\\\xe9.png``, the Latin-1 ``café.png`` as ``caf\\xe9.png``).

The escaping is :func:`dicom_io.messages.printable` with backslashes doubled; ``printable``
itself (re-exported here) is the form for messages that quote a path.

So logs, ``usqa scans`` and reports show the escaped form, and scoring reopens the file from
the original bytes (:func:`fs_path`). ``disposed_path`` / ``disposed_path_bytes`` follow
the same rule. A path whose text form is longer than :data:`MAX_TEXT_BYTES` is not stored:
the ingester refuses the file with the reason.
"""

from __future__ import annotations

import os
import re

from dicom_io.messages import printable

__all__ = [
    "MAX_TEXT_BYTES",
    "escape",
    "fs_path",
    "is_plain",
    "ledger_path",
    "printable",
    "unescape",
]

# Longest path text (UTF-8 bytes) the ledger takes: ``scans.path`` is indexed, and a
# PostgreSQL B-tree entry holds at most 2704 bytes. An escaped byte takes four (``\xHH``),
# so a legal path of 3000 bytes (PATH_MAX is 4096) may not fit; the ingester refuses such
# a file with the reason instead of failing to record it.
MAX_TEXT_BYTES = 2048

_ESCAPE = re.compile(r"\\(?:\\|x([0-9a-f]{2})|u([0-9a-f]{4})|U([0-9a-f]{8}))")


def is_plain(text: str) -> bool:
    """Whether ``text`` is stored as it is: every character printable (no lone surrogates)
    and no backslash (which would make the text form ambiguous)."""
    return text.isprintable() and "\\" not in text


def escape(text: str) -> str:
    """The escaped text form of a name (see the module docstring); reversible."""
    return printable(text.replace("\\", "\\\\"))


def unescape(text: str) -> bytes:
    """The original bytes of an escaped name (the inverse of :func:`escape` after
    ``os.fsdecode``)."""
    out = bytearray()
    pos = 0
    for match in _ESCAPE.finditer(text):
        out += text[pos : match.start()].encode("utf-8")
        byte, short, long = match.groups()
        if byte is not None:
            value = int(byte, 16)
            out += os.fsencode(chr(0xDC00 + value)) if value >= 0x80 else bytes([value])
        elif short is not None or long is not None:
            out += chr(int(short or long, 16)).encode("utf-8", "surrogatepass")
        else:
            out += b"\\"
        pos = match.end()
    out += text[pos:].encode("utf-8")
    return bytes(out)


def ledger_path(path: str) -> tuple[str, bytes | None]:
    """``(text, raw)`` for a path as ``os`` functions give it: the ``path`` column value and
    the ``path_bytes`` value (None when the name is ordinary and stored unchanged)."""
    if is_plain(path):
        return path, None
    return escape(path), os.fsencode(path)


def fs_path(text: str, raw: bytes | None) -> str:
    """The path to open: from the original bytes when the ledger has them, else the text."""
    return os.fsdecode(raw) if raw is not None else text

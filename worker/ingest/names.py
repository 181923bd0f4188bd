"""Which names in the drop folder are scans (a path in a log line is written with
:func:`dicom_io.messages.printable`)."""

from __future__ import annotations

import os

__all__ = ["DONE_DIR", "FAILED_DIR", "TEMP_SUFFIXES", "is_ignored_name"]

TEMP_SUFFIXES = (".part", ".tmp", ".partial", ".filepart", ".crdownload", ".swp", ".json")
DONE_DIR = "done"
FAILED_DIR = "failed"


def is_ignored_name(relative: str) -> bool:
    """Whether a path relative to the drop folder names a temporary, hidden or sidecar
    file, or lies in ``done/`` or ``failed/``."""
    parts = [p for p in relative.replace(os.sep, "/").split("/") if p]
    if not parts:
        return True
    if parts[0] in (DONE_DIR, FAILED_DIR) and len(parts) > 1:
        return True
    if any(p.startswith(".") for p in parts):
        return True
    name = parts[-1].lower()
    return name.endswith(TEMP_SUFFIXES) or name.endswith("~")

"""Small images of scans for ``usqa report --html --thumbnails``: one frame of the file,
cut to the B-mode region (dicom_io's crop) and shrunk, as a PNG data URI.

Only made on explicit request: burned-in annotations can carry patient details. A file is
shown only while it is still the content that was scored: a regular file (never a pipe or
device: opened without blocking) whose size and sha256 are those the ledger recorded on
arrival, and that did not change (device, inode, size, mtime) while it was read. A file
replaced or rewritten since, at its drop-folder path or in ``done/``, is not shown.

With an ``explain`` function (:mod:`worker.report.overlays`), the same verified frame also
gets its saliency overlay: where the evidence for the score and the first defect lies.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import logging
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from db.paths import printable as shown
from db.qa.queries import ScannedFile
from dicom_io import ReadOptions, read
from worker.errors import InputError

__all__ = [
    "GONE",
    "NOT_READ",
    "REPLACED",
    "Explain",
    "Frames",
    "Thumbnail",
    "png_bytes",
    "read_scanned",
    "read_verified",
    "thumbnail",
    "thumbnails",
    "verified",
]

log = logging.getLogger(__name__)

SIZE = 200  # longest side, pixels
BLOCK = 1 << 20

GONE = "file no longer available"
REPLACED = "file changed since it was scored: not shown"
NOT_READ = "file could not be read"


@dataclasses.dataclass(frozen=True)
class Thumbnail:
    """A scan's image as a PNG data URI, or None with the reason shown instead; and, when
    asked for, its saliency overlay (a PNG data URI, or None) with its one-line legend (or
    why there is none)."""

    uri: str | None
    note: str = ""
    overlay: str | None = None
    legend: str = ""


# A frame -> (its overlay as a PNG data URI or None, the legend or why there is none).
Explain = Callable[[np.ndarray], tuple[str | None, str]]


def _identity(info: os.stat_result) -> tuple[int, int, int, int]:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def verified(path: Path, expected: ScannedFile) -> os.stat_result | None:
    """The status of ``path`` if it is a regular file with the recorded size and sha256;
    None otherwise. Raises OSError when it cannot be opened (gone, no permission)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size != expected.size_bytes:
            return None
        digest = hashlib.sha256()
        for block in iter(lambda: fh.read(BLOCK), b""):
            digest.update(block)
    return info if digest.hexdigest() == expected.sha256 else None


def png_bytes(frame: np.ndarray, size: int) -> bytes:
    """``frame`` as a PNG file, shrunk to at most ``size`` pixels on its longest side."""
    image = Image.fromarray(np.ascontiguousarray(frame))
    image.thumbnail((size, size))
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _png(frame: np.ndarray, size: int) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(frame, size)).decode("ascii")


@dataclasses.dataclass(frozen=True)
class Frames:
    """What :func:`read_verified` read: the selected frames ``(index, frame)``, or none
    and ``note`` saying why (GONE, REPLACED or NOT_READ, with the reader's ``error``);
    ``skip_reason``: the reader's reason not to score the file (then no frame is read)."""

    frames: list[tuple[int, np.ndarray]]
    note: str = ""
    error: str = ""
    skip_reason: str | None = None


def read_verified(path: Path, options: ReadOptions, expected: ScannedFile | None) -> Frames:
    """The selected frames (``options.frames_to_score``) of the file at ``path``, read
    only if it is still the ``expected`` content and did not change while read (None:
    a file the ledger does not know, read as it is)."""
    before: os.stat_result | None = None
    if expected is not None:
        try:
            before = verified(path, expected)
        except OSError as exc:
            log.info("not read: %s: %s", shown(path.name), exc.strerror or exc)
            return Frames([], GONE, str(exc.strerror or exc))
        if before is None:
            log.info("not read: %s is not the file that was scored any more", shown(path.name))
            return Frames([], REPLACED)
    try:
        scan = read(path, options)
        frames = [] if scan.skip_reason else list(scan.iter_frames())
        after = path.stat()
    except (InputError, OSError) as exc:
        log.info("a scan could not be read: %s", exc)
        return Frames([], NOT_READ, str(exc))
    if before is not None and _identity(after) != _identity(before):
        log.info("not read: %s changed while it was read", shown(path.name))
        return Frames([], REPLACED)
    if scan.skip_reason:
        return Frames([], skip_reason=scan.skip_reason)
    if not frames:
        return Frames([], NOT_READ, "no frame was selected")
    return Frames(frames)


def read_scanned(expected: ScannedFile, options: ReadOptions) -> Frames:
    """:func:`read_verified` at each known location of a scan's file in turn (moved to
    ``done/``, then where it arrived): the first that is still the scored content wins;
    otherwise why none is (a file present but not the scored one says so, not GONE)."""
    found = Frames([], GONE)
    for candidate in expected.paths:
        got = read_verified(Path(candidate), options, expected)
        if got.frames:
            return got
        if got.note != GONE:  # present but not the scored file: say so
            found = got
    return found


def _thumbnail(got: Frames, size: int, explain: Explain | None) -> Thumbnail:
    if not got.frames:
        return Thumbnail(None, got.note or NOT_READ)
    frame = got.frames[0][1]
    if explain is None:
        return Thumbnail(_png(frame, size))
    overlay, legend = explain(frame)
    return Thumbnail(_png(frame, size), overlay=overlay, legend=legend)


def thumbnail(
    path: Path,
    options: ReadOptions,
    expected: ScannedFile,
    size: int = SIZE,
    explain: Explain | None = None,
) -> Thumbnail:
    """One frame of the scan at ``path``, if the file there is still the scored one; with
    its overlay from ``explain`` when given."""
    got = read_verified(path, dataclasses.replace(options, frames_to_score=1), expected)
    return _thumbnail(got, size, explain)


def thumbnails(
    files: Mapping[int, ScannedFile], options: ReadOptions, explain: Explain | None = None
) -> dict[int, Thumbnail]:
    """A thumbnail per scan id, trying each known location of its file in turn
    (:func:`read_scanned`). ``explain``: also its saliency overlay (see :class:`Thumbnail`)."""
    one = dataclasses.replace(options, frames_to_score=1)
    return {
        scan_id: _thumbnail(read_scanned(expected, one), SIZE, explain)
        for scan_id, expected in files.items()
    }

"""The frames a scan page shows, read from the scan's file only while it is still the content
the ledger scored (:mod:`worker.report.thumbnails`: regular file, recorded size and sha256,
unchanged while read), cut to the B-mode region, within the input limits of the settings.

A page shows the first frame and, for a cine, a strip of :data:`STRIP` evenly spaced frames
(the first among them); each is read with the same selection, so every picture has the same
crop. The files were decoded once already when they were scored, by the sandboxed decoder;
a file that fails now is reported, never a stack trace.
"""

from __future__ import annotations

import dataclasses
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from db.qa.queries import ScannedFile
from dicom_io import ReadOptions
from dicom_io.frames import select_frames
from worker.report.thumbnails import (
    GONE,
    NOT_READ,
    REPLACED,
    Frames,
    png_bytes,
    read_scanned,
    verified,
)

__all__ = [
    "LARGEST",
    "STRIP",
    "Picture",
    "availability",
    "first_frame",
    "frame_picture",
    "placeholder",
    "strip_frames",
]

log = logging.getLogger(__name__)

STRIP = 5  # frames of a cine shown side by side (the first included)
LARGEST = 1024  # longest side of a frame picture, pixels


@dataclass(frozen=True)
class Picture:
    """A PNG of a frame, or None with the HTTP status and the reason shown instead."""

    png: bytes | None
    status: int = 200
    note: str = ""


def strip_frames(frame_count: int | None) -> list[int]:
    """The 0-based frame indices a scan's page shows: ``[0]`` for a single image."""
    return select_frames(max(1, frame_count or 1), STRIP)


def availability(expected: ScannedFile) -> str | None:
    """None when one of the file's known locations still holds the scored content, else
    why not (:data:`GONE` or :data:`REPLACED`). Checks the content only (no decoding)."""
    why = GONE
    for candidate in expected.paths:
        try:
            if verified(Path(candidate), expected) is not None:
                return None
        except OSError:
            continue
        why = REPLACED
    return why


def _status(got: Frames) -> Picture:
    note = got.note or NOT_READ
    return Picture(None, 410 if note in (GONE, REPLACED) else 404, note)


def _read(expected: ScannedFile, options: ReadOptions) -> Frames:
    try:
        return read_scanned(expected, options)
    except Exception as exc:  # a decoder error of any kind: reported, not raised
        log.warning("a scan's file could not be decoded for the review page: %s", exc)
        return Frames([], NOT_READ, str(exc))


def frame_picture(
    expected: ScannedFile, options: ReadOptions, frame_count: int | None, index: int
) -> Picture:
    """Frame ``index`` (one of :func:`strip_frames`) as a PNG."""
    if index not in strip_frames(frame_count):
        return Picture(None, 404, "no such frame on this page")
    got = _read(expected, dataclasses.replace(options, frames_to_score=STRIP))
    frame = dict(got.frames).get(index)
    if frame is None:
        return _status(got) if not got.frames else Picture(None, 404, NOT_READ)
    return Picture(png_bytes(frame, LARGEST))


def first_frame(expected: ScannedFile, options: ReadOptions) -> tuple[np.ndarray | None, Picture]:
    """The first frame as scoring's single-frame read gives it (what the saliency overlay
    explains), or None and why not."""
    got = _read(expected, dataclasses.replace(options, frames_to_score=1))
    if not got.frames:
        return None, _status(got)
    return got.frames[0][1], Picture(None)


def placeholder(text: str, size: tuple[int, int] = (480, 120)) -> bytes:
    """A grey PNG that says ``text`` (in place of a frame that cannot be shown)."""
    image = Image.new("RGB", size, (48, 48, 48))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=16)
    box = draw.textbbox((0, 0), text, font=font)
    x = max(4, (size[0] - (box[2] - box[0])) // 2)
    y = max(4, (size[1] - (box[3] - box[1])) // 2)
    draw.text((x, y), text, fill=(230, 230, 230), font=font)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()

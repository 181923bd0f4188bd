"""Small images of scans for ``usqa report --html --thumbnails``: one frame of the file,
cut to the B-mode region (dicom_io's crop) and shrunk, as a PNG data URI.

Only made on explicit request: burned-in annotations can carry patient details.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from dicom_io import ReadOptions, read
from worker.errors import InputError

__all__ = ["thumbnail", "thumbnails"]

log = logging.getLogger(__name__)

SIZE = 200  # longest side, pixels


def thumbnail(path: Path, options: ReadOptions, size: int = SIZE) -> str | None:
    """A PNG data URI of one frame of the scan at ``path``, or None when the file cannot
    be read any more (moved away, deleted, unreadable)."""
    try:
        scan = read(path, dataclasses.replace(options, frames_to_score=1))
        frame = next(iter(scan.iter_frames()), None)
    except (InputError, OSError) as exc:
        log.info("no thumbnail for a scan: %s", exc)
        return None
    if frame is None:
        return None
    pixels = np.ascontiguousarray(frame[1])
    image = Image.fromarray(pixels)
    image.thumbnail((size, size))
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thumbnails(files: Mapping[int, Sequence[str]], options: ReadOptions) -> dict[int, str | None]:
    """A thumbnail per scan id, trying each known location of its file in turn."""
    out: dict[int, str | None] = {}
    for scan_id, paths in files.items():
        out[scan_id] = None
        for candidate in paths:
            path = Path(candidate)
            if path.is_file():
                out[scan_id] = thumbnail(path, options)
                if out[scan_id] is not None:
                    break
    return out

"""Find the ultrasound image in a frame that has no Sequence of Ultrasound Regions.

Scanner screenshots put the B-mode image on a black background with text, scales, logos
and often a coloured header or tool bar. The heuristic (documented in docs/dicom.md):

1. Grey level = luminance; with several sample frames, the brightest value per pixel.
   Sizes scale with ``u = min(rows, columns) / 240``.
2. Dark level = the 5th percentile of the grey levels, at most 30 (the black background).
3. Annotation bars: from the top and from the bottom edge, drop rows in which at least half
   of the pixels share one flat colour that is not dark and that also fills both ends of
   the row (a header or tool bar), up to a quarter of the frame height per side.
4. Image pixels: grey level averaged over a ``3u`` square above dark + 3, then an opening
   with a ``5u`` square so thin text strokes, tick marks and lines fall away.
5. The box is the bounding box of the largest connected area left.

When nothing is found, or the area is tiny (under 2 % of the frame), or it is the whole
frame, the box is the whole frame with ``source="none"``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

from dicom_io.scan import CropBox

__all__ = ["find_box"]

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
MAX_DARK = 30.0
DARK_MARGIN = 3.0
BAR_FRACTION = 0.5
BAR_MAX_SHARE = 0.25
MIN_AREA_SHARE = 0.02


def _grey(frame: NDArray[np.uint8]) -> NDArray[np.float32]:
    if frame.ndim == 3:
        return frame.astype(np.float32) @ _LUMA
    return frame.astype(np.float32)


def _colour_codes(frame: NDArray[np.uint8]) -> NDArray[np.int32]:
    """One integer per pixel for its colour quantised to 32 levels per channel."""
    q = frame.astype(np.int32) >> 3
    if q.ndim == 2:
        return q
    return (q[..., 0] << 10) | (q[..., 1] << 5) | q[..., 2]


def _is_bar_row(codes: NDArray[np.int32], grey: NDArray[np.float32], dark: float) -> bool:
    values, counts = np.unique(codes, return_counts=True)
    top = int(np.argmax(counts))
    if counts[top] < BAR_FRACTION * codes.size:
        return False
    mode = values[top]
    if codes[0] != mode or codes[-1] != mode:
        return False
    return float(np.median(grey[codes == mode])) > dark + 10


def _bar_rows(frame: NDArray[np.uint8], grey: NDArray[np.float32], dark: float) -> tuple[int, int]:
    """First and last row that are not part of a header or footer bar."""
    rows = grey.shape[0]
    codes = _colour_codes(frame)
    limit = int(rows * BAR_MAX_SHARE)
    top = 0
    while top < limit and _is_bar_row(codes[top], grey[top], dark):
        top += 1
    bottom = rows - 1
    while rows - 1 - bottom < limit and _is_bar_row(codes[bottom], grey[bottom], dark):
        bottom -= 1
    return top, bottom


def find_box(frames: Iterable[NDArray[np.uint8]]) -> tuple[CropBox, str | None]:
    """The box around the ultrasound image in ``frames`` (same size, display intensity,
    consumed one at a time), and a note when the heuristic found nothing usable."""
    from scipy import ndimage

    stream = iter(frames)
    first = next(stream)
    rows, columns = first.shape[:2]
    whole = CropBox.full(rows, columns)
    grey = _grey(first)
    for other in stream:
        if other.shape[:2] == first.shape[:2]:
            np.maximum(grey, _grey(other), out=grey)
    u = min(rows, columns) / 240.0
    dark = min(float(np.percentile(grey, 5)), MAX_DARK)
    top, bottom = _bar_rows(first, grey, dark)

    window = max(1, round(3 * u))
    mean = ndimage.uniform_filter(grey, size=window) if window > 1 else grey
    mask = mean > dark + DARK_MARGIN
    mask[:top] = False
    mask[bottom + 1 :] = False
    side = max(1, round(5 * u))
    mask = ndimage.binary_opening(mask, structure=np.ones((side, side), dtype=bool))

    labels, count = ndimage.label(mask)
    if count == 0:
        return whole, "no image area found by the border heuristic; the whole frame is used"
    sizes = np.bincount(labels.ravel())[1:]
    largest = int(np.argmax(sizes)) + 1
    if sizes[largest - 1] < MIN_AREA_SHARE * rows * columns:
        return whole, "no image area found by the border heuristic; the whole frame is used"
    found = ndimage.find_objects(labels, max_label=largest)[largest - 1]
    assert found is not None
    ys, xs = found
    box = CropBox(int(xs.start), int(ys.start), int(xs.stop) - 1, int(ys.stop) - 1, "heuristic")
    if (box.x0, box.y0, box.x1, box.y1) == (whole.x0, whole.y0, whole.x1, whole.y1):
        return whole, None
    return box, None

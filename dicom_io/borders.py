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
   with a ``5u`` square so thin text strokes, tick marks and lines fall away. Frames whose
   short side is 480 pixels or more do this step on the grey levels averaged over
   ``k x k`` blocks, ``k = min(rows, columns) // 240`` (squares of ``3u / k`` and
   ``5u / k`` blocks), so it costs about what it costs on a 240-479 pixel frame.
5. The box is the bounding box of the largest connected area left (mapped back to whole
   pixels when blocks were used).

When nothing is found, or the area is tiny (under 2 % of the frame), or it is the whole
frame, the box is the whole frame with ``source="none"``.

Steps 1-3 are exact at every size; below 480 pixels the result is the same, pixel for
pixel, as the straightforward scipy version (``uniform_filter``, ``binary_opening``,
``np.unique`` per row, ``np.percentile``), only faster: the array operations are the exact
equivalents in :mod:`dicom_io.filters`.

Owns the heuristic itself: the grey levels, the dark level, the annotation bars, the image
mask and the box mapped back to full-frame pixels (:class:`dicom_io.cropbox.CropBox`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from numpy.typing import NDArray

from dicom_io.cropbox import CropBox
from dicom_io.filters import (
    block_mean,
    fifth_percentile,
    largest_area,
    opening,
    uniform_mean_above,
)

__all__ = ["find_box"]

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
MAX_DARK = 30.0
DARK_MARGIN = 3.0
BAR_FRACTION = 0.5
BAR_MAX_SHARE = 0.25
MIN_AREA_SHARE = 0.02
# Step 4 runs on k x k blocks, k = short side // REDUCED_SIDE (no blocks below 2 x this).
REDUCED_SIDE = 240
NOTHING_FOUND = "no image area found by the border heuristic; the whole frame is used"

# scipy.ndimage.label's default structure in 2-D: edge neighbours only.
_CROSS = np.array([[False, True, False], [True, True, True], [False, True, False]])


def _grey(frame: NDArray[np.uint8]) -> NDArray[np.float32]:
    if frame.ndim == 3:
        return frame.astype(np.float32) @ _LUMA
    return frame.astype(np.float32)


def _colour_codes(pixels: NDArray[np.uint8], colour: bool) -> NDArray[np.int32]:
    """One integer per pixel for its colour quantised to 32 levels per channel (``colour``:
    the last axis holds R, G, B)."""
    q = pixels.astype(np.int32) >> 3
    if not colour:
        return q
    return (q[..., 0] << 10) | (q[..., 1] << 5) | q[..., 2]


def _same_as_first(rows: NDArray[np.uint8]) -> NDArray[np.bool_]:
    """Per pixel of ``rows`` (n, W) or (n, W, 3): same quantised colour as its row's first."""
    q = rows >> 3
    if q.ndim == 2:
        return q == q[:, :1]
    same = q[..., 0] == q[:, :1, 0]
    same &= q[..., 1] == q[:, :1, 1]
    same &= q[..., 2] == q[:, :1, 2]
    return same


def _bar_candidates(
    frame: NDArray[np.uint8],
    grey: NDArray[np.float32],
    limit: int,
    threshold: float,
    from_bottom: bool,
) -> list[int]:
    """The leading rows, from the top or the bottom edge and at most ``limit``, that could be
    bar rows (see :func:`_bar_run`): the two ends share one quantised colour that fills at
    least half of the row, and some grey level in the row is above ``threshold``. Checked in
    growing chunks of rows, after a look at the ends and the brightest grey level of the
    first row alone, since that row usually fails."""
    rows = frame.shape[0]
    edge = rows - 1 if from_bottom else 0
    if limit > 0 and (
        not np.array_equal(frame[edge, 0] >> 3, frame[edge, -1] >> 3)
        or not grey[edge].max() > threshold - 0.01
    ):
        return []
    run: list[int] = []
    chunk = 4
    while len(run) < limit:
        start = len(run)
        stop = min(limit, start + chunk)
        part = slice(rows - stop, rows - start) if from_bottom else slice(start, stop)
        step = -1 if from_bottom else 1
        same = _same_as_first(frame[part][::step])
        passed = same[:, -1] & (np.count_nonzero(same, axis=1) >= BAR_FRACTION * frame.shape[1])
        passed &= grey[part][::step].max(axis=1) > threshold - 0.01  # float32 rounding margin
        failed = np.flatnonzero(~passed)
        good = int(failed[0]) if failed.size else stop - start
        run.extend(rows - 1 - i if from_bottom else i for i in range(start, start + good))
        if failed.size:
            break
        chunk *= 4
    return run


def _bar_run(
    frame: NDArray[np.uint8], candidates: Sequence[int], grey: NDArray[np.float32], dark: float
) -> int:
    """How many of the leading ``candidates`` rows of ``frame`` are bar rows (``grey``: the
    grey levels of the whole frame).

    A bar row: its most common quantised colour (on a tie, the lowest code) fills at least
    half of it and both its ends, and the median grey level of those pixels is more than 10
    above ``dark``. The median is taken only when their darkest and brightest disagree."""
    if not candidates:
        return 0
    pixels = frame[list(candidates)]
    levels = grey[list(candidates)]
    same = _same_as_first(pixels)
    counts = np.count_nonzero(same, axis=1)
    lowest = np.where(same, levels, np.inf).min(axis=1)
    highest = np.where(same, levels, -np.inf).max(axis=1)
    width = same.shape[1]
    threshold = dark + 10
    for i in range(len(candidates)):
        if not same[i, -1] or counts[i] < BAR_FRACTION * width:
            return i
        if 2 * counts[i] <= width:  # no strict majority: the end colour must be the mode
            codes = _colour_codes(pixels[i], colour=frame.ndim == 3)
            values, tally = np.unique(codes, return_counts=True)
            if values[int(np.argmax(tally))] != codes[0]:
                return i
        if float(lowest[i]) > threshold:
            continue
        if float(highest[i]) <= threshold:
            return i
        if float(np.median(levels[i][same[i]])) <= threshold:
            return i
    return len(candidates)


def find_box(frames: Iterable[NDArray[np.uint8]]) -> tuple[CropBox, str | None]:
    """The box around the ultrasound image in ``frames`` (same size, display intensity,
    consumed one at a time, never modified), and a note when the heuristic found nothing
    usable."""
    from scipy import ndimage

    stream = iter(frames)
    first = next(stream)
    rows, columns = first.shape[:2]
    whole = CropBox.full(rows, columns)
    grey = _brightest_grey(first, stream)
    dark = fifth_percentile(grey, MAX_DARK)
    top, bottom = _bars(first, grey, dark)
    factor = max(1, min(rows, columns) // REDUCED_SIDE)
    mask = _image_mask(grey, dark, top, bottom, factor)

    # 16-bit labels (faster) while under 2**16 areas fit the mask (one in every other cell);
    # scipy takes more bits by itself if its interim labels run over.
    small = mask.size < 2 * np.iinfo(np.uint16).max
    labels, count = ndimage.label(mask, _CROSS, output=np.uint16 if small else np.int32)
    if count == 0:
        return whole, NOTHING_FOUND
    total = int(np.count_nonzero(mask))
    area, size = (mask, total) if count == 1 else largest_area(labels, count, total)
    if size < MIN_AREA_SHARE * mask.shape[0] * mask.shape[1]:
        return whole, NOTHING_FOUND
    box = _frame_box(area, factor, rows, columns, top, bottom)
    if (box.x0, box.y0, box.x1, box.y1) == (whole.x0, whole.y0, whole.x1, whole.y1):
        return whole, None
    return box, None


def _brightest_grey(
    first: NDArray[np.uint8], others: Iterator[NDArray[np.uint8]]
) -> NDArray[np.float32]:
    """Step 1: the grey levels of ``first``, the brightest per pixel over ``others`` of the
    same size."""
    grey = _grey(first)
    for other in others:
        if other.shape[:2] == first.shape[:2]:
            np.maximum(grey, _grey(other), out=grey)
    return grey


def _bars(frame: NDArray[np.uint8], grey: NDArray[np.float32], dark: float) -> tuple[int, int]:
    """Step 3: the first row below the top bar and the last row above the bottom bar."""
    rows = frame.shape[0]
    limit = int(rows * BAR_MAX_SHARE)
    top_rows = _bar_candidates(frame, grey, limit, dark + 10, from_bottom=False)
    bottom_rows = _bar_candidates(frame, grey, limit, dark + 10, from_bottom=True)
    top = _bar_run(frame, top_rows, grey, dark)
    bottom = rows - 1 - _bar_run(frame, bottom_rows, grey, dark)
    return top, bottom


def _image_mask(
    grey: NDArray[np.float32], dark: float, top: int, bottom: int, factor: int
) -> NDArray[np.bool_]:
    """Step 4: the image pixels (or ``factor x factor`` blocks) between the bars, after the
    opening that removes text strokes, tick marks and lines."""
    rows, columns = grey.shape
    u = min(rows, columns) / 240.0
    level = grey if factor == 1 else block_mean(grey, factor)
    window = max(1, round(3 * u / factor))
    threshold = dark + DARK_MARGIN
    mask = uniform_mean_above(level, window, threshold) if window > 1 else level > threshold
    mask[: top // factor] = False  # a block that straddles a bar edge stays in
    mask[bottom // factor + 1 :] = False
    side = max(1, round(5 * u / factor))
    return opening(mask, side)


def _frame_box(
    area: NDArray[np.bool_], factor: int, rows: int, columns: int, top: int, bottom: int
) -> CropBox:
    """Step 5: the bounding box of ``area`` back in full-frame pixels: whole blocks; a box
    that reaches the last block reaches the frame edge (the partial blocks left out); never
    into a bar."""
    ys = np.flatnonzero(area.any(axis=1))
    xs = np.flatnonzero(area.any(axis=0))
    height, width = area.shape
    x0 = int(xs[0]) * factor
    x1 = columns - 1 if xs[-1] == width - 1 else (int(xs[-1]) + 1) * factor - 1
    y0 = max(int(ys[0]) * factor, top)
    y1 = min(rows - 1 if ys[-1] == height - 1 else (int(ys[-1]) + 1) * factor - 1, bottom)
    return CropBox(x0, y0, x1, y1, "heuristic")

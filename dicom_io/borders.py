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
pixel, as the straightforward scipy version (``binary_opening``, ``np.unique`` per row,
``np.percentile``), only faster.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dicom_io.scan import CropBox

__all__ = ["find_box", "opening"]

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
MAX_DARK = 30.0
DARK_MARGIN = 3.0
BAR_FRACTION = 0.5
BAR_MAX_SHARE = 0.25
MIN_AREA_SHARE = 0.02
# Step 4 runs on k x k blocks, k = short side // REDUCED_SIDE (no blocks below 2 x this).
REDUCED_SIDE = 240
NOTHING_FOUND = "no image area found by the border heuristic; the whole frame is used"

_Combine = Callable[[NDArray[np.bool_], NDArray[np.bool_]], NDArray[np.bool_]]


def _grey(frame: NDArray[np.uint8]) -> NDArray[np.float32]:
    if frame.ndim == 3:
        return frame.astype(np.float32) @ _LUMA
    return frame.astype(np.float32)


def _block_mean(grey: NDArray[np.float32], factor: int) -> NDArray[np.float32]:
    """``grey`` averaged over ``factor x factor`` blocks; the partial blocks of the last
    ``rows % factor`` rows and ``columns % factor`` columns are left out."""
    rows, columns = grey.shape
    whole = grey[: rows - rows % factor, : columns - columns % factor]
    sums = whole[0::factor].copy()
    for i in range(1, factor):
        sums += whole[i::factor]
    blocks = sums[:, 0::factor].copy()
    for i in range(1, factor):
        blocks += sums[:, i::factor]
    blocks *= np.float32(1.0 / (factor * factor))
    return blocks


def _order_statistics(flat: NDArray[np.float32], low: int, high: int) -> tuple[Any, Any]:
    """The ``low``-th and ``high``-th smallest of ``flat`` (values in 0..255.x): the minimum
    when enough pixels hold it (a black background); else a histogram of the integer parts
    finds their bins, and only the values in those bins are sorted."""
    smallest = flat.min()
    if np.count_nonzero(flat == smallest) > high:
        return smallest, smallest
    bins = flat.astype(np.uint8)
    cumulative = np.cumsum(np.bincount(bins, minlength=256))
    first = int(np.searchsorted(cumulative, low, side="right"))
    last = int(np.searchsorted(cumulative, high, side="right"))
    chosen = flat[bins == first] if first == last else flat[(bins >= first) & (bins <= last)]
    start = int(cumulative[first - 1]) if first else 0
    if first == last and chosen.min() == chosen.max():  # e.g. a bin of black pixels
        return chosen[0], chosen[0]
    part = np.partition(chosen, [low - start, high - start])
    return part[low - start], part[high - start]


def _fifth_percentile(grey: NDArray[np.float32]) -> float:
    """``np.percentile(grey, 5)`` (linear method), bit for bit: the same two order statistics
    and the same float32 interpolation as numpy, without a partial sort of every pixel."""
    flat = grey.ravel()
    position = (flat.size - 1) * 0.05  # numpy's virtual index
    below = math.floor(position)
    a, b = _order_statistics(flat, below, min(below + 1, flat.size - 1))
    gamma = position - below
    diff = b - a
    if gamma >= 0.5:
        return float(b - diff * np.float32(1 - gamma))
    return float(a + diff * np.float32(gamma))


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
    growing chunks of rows, since the first row usually fails."""
    rows = frame.shape[0]
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


def _runs(mask: NDArray[np.bool_], side: int, axis: int, combine: _Combine) -> NDArray[np.bool_]:
    """``combine`` over every run of ``side`` cells along ``axis``: ``n - side + 1`` results,
    result ``j`` for cells ``j .. j + side - 1``, in about log2(side) whole-array steps."""

    def cut(a: NDArray[np.bool_], start: int, stop: int | None) -> NDArray[np.bool_]:
        index: list[slice] = [slice(None)] * a.ndim
        index[axis] = slice(start, stop)
        return a[tuple(index)]

    acc, length = mask, 1
    while 2 * length <= side:
        acc = combine(cut(acc, 0, acc.shape[axis] - length), cut(acc, length, None))
        length *= 2
    if length < side:  # two overlapping runs of `length` cover `side` cells
        rest = side - length
        acc = combine(cut(acc, 0, acc.shape[axis] - rest), cut(acc, rest, None))
    return acc


def _erode(mask: NDArray[np.bool_], side: int, axis: int) -> NDArray[np.bool_]:
    """Erosion by a line of ``side`` cells centred on cell ``side // 2``; outside is False."""
    n = mask.shape[axis]
    out = np.zeros_like(mask)
    if n >= side:
        index: list[slice] = [slice(None)] * mask.ndim
        index[axis] = slice(side // 2, side // 2 + n - side + 1)
        out[tuple(index)] = _runs(mask, side, axis, np.logical_and)
    return out


def _dilate(mask: NDArray[np.bool_], side: int, axis: int) -> NDArray[np.bool_]:
    """Dilation by the same line, reflected (as scipy's binary_dilation does)."""
    after = side - 1 - side // 2
    shape = list(mask.shape)
    shape[axis] += side - 1
    padded = np.zeros(shape, dtype=bool)
    index: list[slice] = [slice(None)] * mask.ndim
    index[axis] = slice(after, after + mask.shape[axis])
    padded[tuple(index)] = mask
    return _runs(padded, side, axis, np.logical_or)


def opening(mask: NDArray[np.bool_], side: int) -> NDArray[np.bool_]:
    """Binary opening of a 2-D mask with an all-ones ``side x side`` square: equal to
    ``scipy.ndimage.binary_opening(mask, structure=np.ones((side, side)))`` for odd and even
    sides, as separable row and column passes of whole-array logical operations."""
    if side <= 1:
        return mask.copy()
    eroded = _erode(_erode(mask, side, 0), side, 1)
    return _dilate(_dilate(eroded, side, 0), side, 1)


def find_box(frames: Iterable[NDArray[np.uint8]]) -> tuple[CropBox, str | None]:
    """The box around the ultrasound image in ``frames`` (same size, display intensity,
    consumed one at a time, never modified), and a note when the heuristic found nothing
    usable."""
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
    dark = min(_fifth_percentile(grey), MAX_DARK)

    limit = int(rows * BAR_MAX_SHARE)
    top_rows = _bar_candidates(first, grey, limit, dark + 10, from_bottom=False)
    bottom_rows = _bar_candidates(first, grey, limit, dark + 10, from_bottom=True)
    top = _bar_run(first, top_rows, grey, dark)
    bottom = rows - 1 - _bar_run(first, bottom_rows, grey, dark)

    factor = max(1, min(rows, columns) // REDUCED_SIDE)
    level = grey if factor == 1 else _block_mean(grey, factor)
    window = max(1, round(3 * u / factor))
    mean = ndimage.uniform_filter(level, size=window) if window > 1 else level
    mask = mean > dark + DARK_MARGIN
    mask[: top // factor] = False  # a block that straddles a bar edge stays in
    mask[bottom // factor + 1 :] = False
    side = max(1, round(5 * u / factor))
    mask = opening(mask, side)

    labels, count = ndimage.label(mask, output=np.intp)
    if count == 0:
        return whole, NOTHING_FOUND
    if count == 1:
        area, size = mask, np.count_nonzero(mask)
    else:
        sizes = np.bincount(labels.ravel())[1:]
        largest = int(np.argmax(sizes)) + 1
        area, size = labels == largest, sizes[largest - 1]
    if size < MIN_AREA_SHARE * mask.shape[0] * mask.shape[1]:
        return whole, NOTHING_FOUND
    ys = np.flatnonzero(area.any(axis=1))
    xs = np.flatnonzero(area.any(axis=0))
    # Back to full-frame pixels: whole blocks; a box that reaches the last block reaches the
    # frame edge (the partial blocks left out); never into a bar.
    height, width = mask.shape
    x0 = int(xs[0]) * factor
    x1 = columns - 1 if xs[-1] == width - 1 else (int(xs[-1]) + 1) * factor - 1
    y0 = max(int(ys[0]) * factor, top)
    y1 = min(rows - 1 if ys[-1] == height - 1 else (int(ys[-1]) + 1) * factor - 1, bottom)
    box = CropBox(x0, y0, x1, y1, "heuristic")
    if (box.x0, box.y0, box.x1, box.y1) == (whole.x0, whole.y0, whole.x1, whole.y1):
        return whole, None
    return box, None

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
``np.unique`` per row, ``np.percentile``), only faster. The ``3u`` average is scipy's
``uniform_filter`` bit for bit, from float64 window sums that are exact for grey levels (scipy
itself otherwise), and step 4 compares the sums with the least sum whose average is above the
threshold instead of dividing each one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dicom_io.cropbox import CropBox

__all__ = ["find_box", "opening"]

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
MAX_DARK = 30.0
DARK_MARGIN = 3.0
BAR_FRACTION = 0.5
BAR_MAX_SHARE = 0.25
MIN_AREA_SHARE = 0.02
# Step 4 runs on k x k blocks, k = short side // REDUCED_SIDE (no blocks below 2 x this).
REDUCED_SIDE = 240
# Up to this many areas, the largest is found by counting one area at a time.
FEW_LABELS = 16
NOTHING_FOUND = "no image area found by the border heuristic; the whole frame is used"

# scipy.ndimage.label's default structure in 2-D: edge neighbours only.
_CROSS = np.array([[False, True, False], [True, True, True], [False, True, False]])

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


def _sums_exact(level: NDArray[np.float32], size: int) -> bool:
    """Whether every sum of up to ``size`` values of ``level``, and of a ``size``-mean of it,
    is exact in float64: no value is negative (nor -0.0), infinite or nan, the smallest above
    0 is at least 2**-100, and the largest is at most ``2**28 / size**2`` times it (all values
    are then whole multiples of a power of two that leaves the sums room)."""
    bits = np.ascontiguousarray(level).view(np.int32)  # in the values' order when >= 0
    low, high = int(bits.min()), int(bits.max())
    if low < 0 or high >= 0x7F800000:  # a negative value (or -0.0), inf or nan
        return False
    if high == 0:
        return True
    if low == 0:  # the smallest above 0 instead: 0 wraps round to the largest
        low = int((bits.view(np.uint32) - 1).min()) + 1
    smallest, highest = (float(v) for v in np.array([low, high], np.int32).view(np.float32))
    return smallest >= 2.0**-100 and highest * size * size <= 2.0**28 * smallest


@functools.cache
def _reciprocal_rounds_alike(size: int) -> bool:
    """Whether ``size`` times the float64 of ``1 / size`` is within 2**-54 of 1 (2 to 8 are).

    Then the float32 of ``s * (1 / size)`` is that of ``s / size`` for every sum ``s`` of
    :func:`_window_sums`' first pass. Both float64 results are within ``q * 2**-52`` of
    ``q = s / size``. The sums are whole multiples of a power of two ``g`` and below
    ``2**52 * g``, so the only float32 rounding tie that near ``q`` can be ``q`` itself, and
    then both results are exactly ``q`` (a tie has 25 bits; the product is off by less than
    half a float64 step).
    """
    return abs(Fraction(1 / size) * size - 1) <= Fraction(1, 2**54)


def _window_sums(level: NDArray[np.float32], size: int) -> NDArray[np.float64] | None:
    """The float64 sums that ``scipy.ndimage.uniform_filter(level, size)`` divides by
    ``size`` in its last pass, when they are exact (else None): ``columns + size - 1`` per
    row, of which the first ``columns`` are the sums and the rest are not used.

    scipy keeps a float64 running sum along each line (mode "reflect"; axis 0, then axis 1
    on the float32 means). When every such sum is exact (:func:`_sums_exact`) it is the
    plain window sum, taken here with a few whole-array additions."""
    rows, columns = level.shape
    if level.dtype != np.float32 or min(rows, columns) < size or not _sums_exact(level, size):
        return None
    before, after = size // 2, size - 1 - size // 2
    length = max((rows + size - 1) * columns, rows * (columns + size - 1))
    padded, sums = np.empty(length), np.empty(length)
    # Axis 0: the rows reflected at both ends, sums of whole rows, then the float32 means.
    tall = padded[: (rows + size - 1) * columns].reshape(rows + size - 1, columns)
    tall[before : before + rows] = level
    tall[:before] = level[before - 1 :: -1] if before else level[:0]
    tall[before + rows :] = level[rows - after :][::-1]
    total = sums[: rows * columns].reshape(rows, columns)
    np.add(tall[:rows], tall[1 : rows + 1], out=total)
    for k in range(2, size):
        total += tall[k : k + rows]
    means = np.empty((rows, columns), dtype=np.float32)
    if _reciprocal_rounds_alike(size):
        np.multiply(total, 1 / size, out=means)
    else:
        np.divide(total, size, out=means)
    # Axis 1: each row of means reflected, then sums over the flat buffer (the sums that
    # straddle two rows are not used).
    wide = padded[: rows * (columns + size - 1)].reshape(rows, columns + size - 1)
    wide[:, before : before + columns] = means
    wide[:, :before] = means[:, before - 1 :: -1] if before else means[:, :0]
    wide[:, before + columns :] = means[:, columns - after :][:, ::-1]
    flat = wide.ravel()
    count = flat.size - (size - 1)
    np.add(flat[:count], flat[1 : count + 1], out=sums[:count])
    for k in range(2, size):
        sums[:count] += flat[k : k + count]
    sums[count : flat.size] = 0.0
    return sums[: flat.size].reshape(rows, columns + size - 1)


def _uniform_mean(level: NDArray[np.float32], size: int) -> NDArray[np.float32]:
    """``scipy.ndimage.uniform_filter(level, size)`` of a 2-D float32 array, bit for bit
    (scipy itself when the sums are not exact, or the array is smaller than the window)."""
    sums = _window_sums(level, size)
    if sums is None:
        from scipy import ndimage

        return ndimage.uniform_filter(level, size=size)
    return np.divide(sums[:, : level.shape[1]], size, out=np.empty(level.shape, np.float32))


def _least_sum_above(threshold: float, size: int) -> float | None:
    """The smallest float64 ``s`` for which the float32 of ``s / size`` is above the float32
    of ``threshold`` (a few steps from ``size`` times the midpoint between that float32 and
    the next one; the test is monotonic in ``s``), or None when it is not near there."""
    if not abs(threshold) < 1e38:  # also nan; float32 and the next one finite
        return None
    bound = np.float32(threshold)
    start = (float(bound) + float(np.nextafter(bound, np.float32(np.inf)))) / 2 * size

    def above(s: float) -> bool:
        return bool(np.float32(s / size) > bound)

    s, steps = start, 0
    if above(s):
        while above(lower := math.nextafter(s, -math.inf)):
            s, steps = lower, steps + 1
            if steps > 64:
                return None
        return s
    while not above(s):
        s, steps = math.nextafter(s, math.inf), steps + 1
        if steps > 64:
            return None
    return s


def _uniform_mean_above(
    level: NDArray[np.float32], size: int, threshold: float
) -> NDArray[np.bool_]:
    """``_uniform_mean(level, size) > threshold``, without the last division: each window sum
    is compared with the least sum whose mean is above ``threshold``."""
    sums = _window_sums(level, size)
    least = None if sums is None else _least_sum_above(threshold, size)
    if sums is None or least is None:
        return _uniform_mean(level, size) > threshold
    return np.ascontiguousarray((sums >= least)[:, : level.shape[1]])


def _order_statistics(
    flat: NDArray[np.float32], low: int, high: int, cap: float
) -> tuple[Any, Any] | None:
    """The ``low``-th and ``high``-th smallest of ``flat`` (values in 0..255.x), or None when
    the ``low``-th is 1 or more above ``cap``: the minimum when enough pixels hold it (a black
    background); else a bisection on counts of integer parts below a bound finds their bins,
    and only the values in those bins are sorted."""
    smallest = flat.min()
    if np.count_nonzero(flat == smallest) > high:
        return smallest, smallest
    bins = flat.astype(np.uint8)
    below: dict[int, int] = {0: 0, 256: flat.size}  # bin -> pixels in lower bins

    def count_below(b: int) -> int:
        if b not in below:
            below[b] = int(np.count_nonzero(bins < b))
        return below[b]

    def bin_of(rank: int, lo: int, hi: int) -> int:
        """The bin of the ``rank``-th smallest, known to be in ``lo .. hi``."""
        while lo < hi:
            mid = (lo + hi) // 2
            if count_below(mid + 1) > rank:
                hi = mid
            else:
                lo = mid + 1
        return lo

    top = 255
    if -math.inf < cap < 254:
        top = max(0, math.floor(cap) + 1)
        if count_below(top + 1) <= low:  # the low-th value is at least floor(cap) + 2
            return None
    first = bin_of(low, int(smallest), top)
    last = first if count_below(first + 1) > high else bin_of(high, first + 1, 255)
    chosen = flat[bins == first] if first == last else flat[(bins >= first) & (bins <= last)]
    start = count_below(first)
    if first == last and chosen.min() == chosen.max():  # e.g. a bin of black pixels
        return chosen[0], chosen[0]
    part = np.partition(chosen, [low - start, high - start])
    return part[low - start], part[high - start]


def _fifth_percentile(grey: NDArray[np.float32], cap: float = math.inf) -> float:
    """``min(np.percentile(grey, 5), cap)`` (linear method), bit for bit: the same two order
    statistics and the same float32 interpolation as numpy, without a partial sort of every
    pixel."""
    flat = grey.ravel()
    position = (flat.size - 1) * 0.05  # numpy's virtual index
    below = math.floor(position)
    found = _order_statistics(flat, below, min(below + 1, flat.size - 1), cap)
    if found is None:  # both order statistics, so the percentile too, are above cap + 1
        return cap
    a, b = found
    gamma = position - below
    diff = b - a
    if gamma >= 0.5:
        return min(float(b - diff * np.float32(1 - gamma)), cap)
    return min(float(a + diff * np.float32(gamma)), cap)


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


def _runs(cells: NDArray[np.bool_], side: int, combine: _Combine) -> NDArray[np.bool_]:
    """``combine`` over every run of ``side`` cells along the first axis: ``n - side + 1``
    results, result ``j`` for cells ``j .. j + side - 1``, in about log2(side) whole-array
    steps."""
    acc, length = cells, 1
    while 2 * length <= side:
        acc = combine(acc[:-length], acc[length:])
        length *= 2
    if length < side:  # two overlapping runs of `length` cover `side` cells
        rest = side - length
        acc = combine(acc[:-rest], acc[rest:])
    return acc


def _erode(mask: NDArray[np.bool_], side: int, axis: int) -> NDArray[np.bool_]:
    """Erosion of a 2-D mask by a line of ``side`` cells along ``axis``, centred on cell
    ``side // 2``; outside is False. Along rows, the runs are taken over the flat mask (one
    long line instead of a line per row) and those that straddle two rows are cleared."""
    n = mask.shape[axis]
    out = np.zeros(mask.shape, dtype=bool)
    if n < side:
        return out
    centre = side // 2
    if axis == 0:
        out[centre : centre + n - side + 1] = _runs(mask, side, np.logical_and)
        return out
    runs = _runs(np.ascontiguousarray(mask).ravel(), side, np.logical_and)
    out.ravel()[centre : centre + runs.size] = runs
    out[:, :centre] = False
    out[:, centre + n - side + 1 :] = False
    return out


def _dilate(mask: NDArray[np.bool_], side: int, axis: int) -> NDArray[np.bool_]:
    """Dilation by the same line, reflected (as scipy's binary_dilation does). Along rows,
    the rows padded with False are run over as one flat line."""
    rows, columns = mask.shape
    after = side - 1 - side // 2
    if axis == 0:
        padded = np.zeros((rows + side - 1, columns), dtype=bool)
        padded[after : after + rows] = mask
        return _runs(padded, side, np.logical_or)
    width = columns + side - 1
    padded = np.zeros((rows + 1, width), dtype=bool)  # a row more: runs fill whole rows
    padded[:rows, after : after + columns] = mask
    runs = _runs(padded.ravel(), side, np.logical_or)
    return np.ascontiguousarray(runs[: rows * width].reshape(rows, width)[:, :columns])


def opening(mask: NDArray[np.bool_], side: int) -> NDArray[np.bool_]:
    """Binary opening of a 2-D mask with an all-ones ``side x side`` square: equal to
    ``scipy.ndimage.binary_opening(mask, structure=np.ones((side, side)))`` for odd and even
    sides, as separable row and column passes of whole-array logical operations."""
    if side <= 1:
        return mask.copy()
    eroded = _erode(_erode(mask, side, 0), side, 1)
    return _dilate(_dilate(eroded, side, 0), side, 1)


def _largest(labels: NDArray[Any], count: int, total: int) -> tuple[NDArray[np.bool_], int]:
    """The largest of the ``count`` labelled areas (``total`` cells in all; on a tie, the
    lowest label) and its size. With a few labels, each is counted in turn until the largest
    so far is no smaller than all the cells left; else all at once with ``np.bincount``."""
    if count > FEW_LABELS:
        sizes = np.bincount(labels.ravel())[1:]
        largest = int(np.argmax(sizes)) + 1
        return labels == largest, int(sizes[largest - 1])
    area = labels == 1
    size = int(np.count_nonzero(area))
    left, label = total - size, 1
    while size < left and label < count:
        label += 1
        cells = labels == label
        n = int(np.count_nonzero(cells))
        if n > size:
            area, size = cells, n
        left -= n
    return area, size


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
    dark = _fifth_percentile(grey, MAX_DARK)

    limit = int(rows * BAR_MAX_SHARE)
    top_rows = _bar_candidates(first, grey, limit, dark + 10, from_bottom=False)
    bottom_rows = _bar_candidates(first, grey, limit, dark + 10, from_bottom=True)
    top = _bar_run(first, top_rows, grey, dark)
    bottom = rows - 1 - _bar_run(first, bottom_rows, grey, dark)

    factor = max(1, min(rows, columns) // REDUCED_SIDE)
    level = grey if factor == 1 else _block_mean(grey, factor)
    window = max(1, round(3 * u / factor))
    threshold = dark + DARK_MARGIN
    mask = _uniform_mean_above(level, window, threshold) if window > 1 else level > threshold
    mask[: top // factor] = False  # a block that straddles a bar edge stays in
    mask[bottom // factor + 1 :] = False
    side = max(1, round(5 * u / factor))
    mask = opening(mask, side)

    # 16-bit labels (faster) while under 2**16 areas fit the mask (one in every other cell);
    # scipy takes more bits by itself if its interim labels run over.
    small = mask.size < 2 * np.iinfo(np.uint16).max
    labels, count = ndimage.label(mask, _CROSS, output=np.uint16 if small else np.int32)
    if count == 0:
        return whole, NOTHING_FOUND
    total = int(np.count_nonzero(mask))
    area, size = (mask, total) if count == 1 else _largest(labels, count, total)
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

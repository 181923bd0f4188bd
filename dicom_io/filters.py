"""Exact, fast equivalents of the scipy and numpy image operations the border heuristic uses.

Owns the array arithmetic under :mod:`dicom_io.borders`, each function equal to a library
call, only faster: :func:`uniform_mean` is ``scipy.ndimage.uniform_filter`` bit for bit, from
float64 window sums that are exact for grey levels (scipy itself otherwise), and
:func:`uniform_mean_above` compares the sums with the least sum whose average is above the
threshold instead of dividing each one; :func:`opening` is ``scipy.ndimage.binary_opening``
with a square; :func:`fifth_percentile` is ``np.percentile(grey, 5)``; :func:`largest_area`
is the largest labelled area as ``np.bincount`` and ``np.argmax`` find it; :func:`block_mean`
averages ``k x k`` blocks. ``tests/dicom_io/test_dicom_borders.py`` checks each against the
library.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "block_mean",
    "fifth_percentile",
    "largest_area",
    "opening",
    "uniform_mean",
    "uniform_mean_above",
    "window_sums",
]

# Up to this many areas, the largest is found by counting one area at a time.
FEW_LABELS = 16

_Combine = Callable[[NDArray[np.bool_], NDArray[np.bool_]], NDArray[np.bool_]]


def block_mean(grey: NDArray[np.float32], factor: int) -> NDArray[np.float32]:
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
    :func:`window_sums`' first pass. Both float64 results are within ``q * 2**-52`` of
    ``q = s / size``. The sums are whole multiples of a power of two ``g`` and below
    ``2**52 * g``, so the only float32 rounding tie that near ``q`` can be ``q`` itself, and
    then both results are exactly ``q`` (a tie has 25 bits; the product is off by less than
    half a float64 step).
    """
    return abs(Fraction(1 / size) * size - 1) <= Fraction(1, 2**54)


def window_sums(level: NDArray[np.float32], size: int) -> NDArray[np.float64] | None:
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


def uniform_mean(level: NDArray[np.float32], size: int) -> NDArray[np.float32]:
    """``scipy.ndimage.uniform_filter(level, size)`` of a 2-D float32 array, bit for bit
    (scipy itself when the sums are not exact, or the array is smaller than the window)."""
    sums = window_sums(level, size)
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


def uniform_mean_above(
    level: NDArray[np.float32], size: int, threshold: float
) -> NDArray[np.bool_]:
    """``uniform_mean(level, size) > threshold``, without the last division: each window sum
    is compared with the least sum whose mean is above ``threshold``."""
    sums = window_sums(level, size)
    least = None if sums is None else _least_sum_above(threshold, size)
    if sums is None or least is None:
        return uniform_mean(level, size) > threshold
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


def fifth_percentile(grey: NDArray[np.float32], cap: float = math.inf) -> float:
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


def largest_area(labels: NDArray[Any], count: int, total: int) -> tuple[NDArray[np.bool_], int]:
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

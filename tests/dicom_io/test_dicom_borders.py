"""The fast border heuristic against the straightforward version it replaced, and the
frames it decodes being handed to ``iter_frames`` instead of being decoded again."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image, ImageDraw
from pydicom.data import get_testdata_file
from scipy import ndimage

from dicom_io import CropBox, ReadOptions, read
from dicom_io.borders import find_box
from dicom_io.filters import (
    fifth_percentile,
    largest_area,
    opening,
    uniform_mean,
    uniform_mean_above,
    window_sums,
)
from dicom_io.frames import DicomFrames
from dicom_io.images import ImageFrames
from dicom_io.scan import HEURISTIC_SAMPLE_FRAMES

# --- the reference: dicom_io/borders.py before it was made fast (commit 7e3fb8f) ----------

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _ref_grey(frame: NDArray[np.uint8]) -> NDArray[np.float32]:
    if frame.ndim == 3:
        return frame.astype(np.float32) @ _LUMA
    return frame.astype(np.float32)


def _ref_colour_codes(frame: NDArray[np.uint8]) -> NDArray[np.int32]:
    q = frame.astype(np.int32) >> 3
    if q.ndim == 2:
        return q
    return (q[..., 0] << 10) | (q[..., 1] << 5) | q[..., 2]


def _ref_is_bar_row(codes: NDArray[np.int32], grey: NDArray[np.float32], dark: float) -> bool:
    values, counts = np.unique(codes, return_counts=True)
    top = int(np.argmax(counts))
    if counts[top] < 0.5 * codes.size:
        return False
    mode = values[top]
    if codes[0] != mode or codes[-1] != mode:
        return False
    return float(np.median(grey[codes == mode])) > dark + 10


def _ref_bar_rows(
    frame: NDArray[np.uint8], grey: NDArray[np.float32], dark: float
) -> tuple[int, int]:
    rows = grey.shape[0]
    codes = _ref_colour_codes(frame)
    limit = int(rows * 0.25)
    top = 0
    while top < limit and _ref_is_bar_row(codes[top], grey[top], dark):
        top += 1
    bottom = rows - 1
    while rows - 1 - bottom < limit and _ref_is_bar_row(codes[bottom], grey[bottom], dark):
        bottom -= 1
    return top, bottom


def reference_find_box(frames: Iterable[NDArray[np.uint8]]) -> tuple[CropBox, str | None]:
    stream = iter(frames)
    first = next(stream)
    rows, columns = first.shape[:2]
    whole = CropBox.full(rows, columns)
    grey = _ref_grey(first)
    for other in stream:
        if other.shape[:2] == first.shape[:2]:
            np.maximum(grey, _ref_grey(other), out=grey)
    u = min(rows, columns) / 240.0
    dark = min(float(np.percentile(grey, 5)), 30.0)
    top, bottom = _ref_bar_rows(first, grey, dark)
    window = max(1, round(3 * u))
    mean = ndimage.uniform_filter(grey, size=window) if window > 1 else grey
    mask = mean > dark + 3.0
    mask[:top] = False
    mask[bottom + 1 :] = False
    side = max(1, round(5 * u))
    mask = ndimage.binary_opening(mask, structure=np.ones((side, side), dtype=bool))
    labels, count = ndimage.label(mask)
    nothing = "no image area found by the border heuristic; the whole frame is used"
    if count == 0:
        return whole, nothing
    sizes = np.bincount(labels.ravel())[1:]
    largest = int(np.argmax(sizes)) + 1
    if sizes[largest - 1] < 0.02 * rows * columns:
        return whole, nothing
    found = ndimage.find_objects(labels, max_label=largest)[largest - 1]
    assert found is not None
    ys, xs = found
    box = CropBox(int(xs.start), int(ys.start), int(xs.stop) - 1, int(ys.stop) - 1, "heuristic")
    if (box.x0, box.y0, box.x1, box.y1) == (whole.x0, whole.y0, whole.x1, whole.y1):
        return whole, None
    return box, None


# --- test screens -----------------------------------------------------------------------


def busy_screen(rows: int, columns: int, rng: np.random.Generator) -> NDArray[np.uint8]:
    """A random screen: flat or half-and-half bars at the top and bottom (half-and-half rows
    are exact ties between two colours), speckle, text anywhere, a grey or black background."""
    frame = np.full((rows, columns, 3), int(rng.choice([0, 0, 5, 20, 40])), dtype=np.uint8)
    if rng.random() < 0.7:
        height = int(rng.integers(1, max(2, rows // 3)))
        colour = rng.integers(0, 256, 3)
        frame[:height] = colour
        if rng.random() < 0.5:
            frame[:height, : columns // 2] = rng.integers(0, 256, 3)
            if rng.random() < 0.5:
                frame[:height, 0] = colour
    if rng.random() < 0.5:
        height = int(rng.integers(1, max(2, rows // 3)))
        frame[rows - height :] = rng.integers(0, 256, 3)
    y0, x0 = int(rng.integers(0, rows // 3 + 1)), int(rng.integers(0, columns // 3 + 1))
    y1, x1 = int(rng.integers(2 * rows // 3, rows)), int(rng.integers(2 * columns // 3, columns))
    speckle = rng.rayleigh(rng.uniform(5, 80), (y1 - y0, x1 - x0, 1))
    frame[y0:y1, x0:x1] = np.clip(speckle, 0, 255).astype(np.uint8)
    picture = Image.fromarray(frame)
    draw = ImageDraw.Draw(picture)
    for row in range(0, rows, int(rng.integers(10, 40))):
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.text((int(rng.integers(0, columns)), row), "Gn 60", fill=fill)
    return np.asarray(picture).copy()


def scanner_screen(rows: int, columns: int, sector: bool, seed: int) -> NDArray[np.uint8]:
    """A tidy screen: header bar with text, a speckle rectangle or sector, a text column on
    the left, a grey-scale bar on the right and a line of text at the bottom."""
    rng = np.random.default_rng(seed)
    frame = np.zeros((rows, columns, 3), dtype=np.uint8)
    frame[: rows // 16] = (40, 60, 95)
    y, x = np.mgrid[0:rows, 0:columns]
    top, left, right, bottom = rows // 8, columns // 5, columns - columns // 5, rows - rows // 10
    if sector:
        centre = (left + right) / 2
        angle = np.degrees(np.arctan2(x - centre, y - top))
        radius = np.hypot(x - centre, y - top)
        area = (np.abs(angle) < 38) & (radius < bottom - top) & (radius > 8)
    else:
        area = (y >= top) & (y < bottom) & (x >= left) & (x < right)
    level = np.clip(rng.rayleigh(rng.uniform(40, 80), (rows, columns)), 0, 255)
    frame[area] = level[area][:, None].astype(np.uint8)
    picture = Image.fromarray(frame)
    draw = ImageDraw.Draw(picture)
    draw.text((10, 4), "HOSPITAL  PATIENT 01/02/2024", fill=(255, 255, 255))
    for row in range(top, bottom, max(14, rows // 24)):
        draw.text((8, row), "Gn 60 C 61", fill=(255, 255, 255))
    bar = right + columns // 20
    draw.rectangle((bar, top + 10, bar + max(4, columns // 90), bottom - 40), fill=(200,) * 3)
    draw.text((left, rows - 14), "MI 1.1  TIS 0.4", fill=(255, 255, 0))
    return np.asarray(picture).copy()


def offset(a: CropBox, b: CropBox) -> int:
    """The largest difference between two boxes' corners, in pixels."""
    return max(abs(a.x0 - b.x0), abs(a.y0 - b.y0), abs(a.x1 - b.x1), abs(a.y1 - b.y1))


# --- the pieces -------------------------------------------------------------------------


@pytest.mark.parametrize("side", [1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 16])
def test_opening_equals_scipy_binary_opening(side: int) -> None:
    rng = np.random.default_rng(side)
    for _ in range(25):
        shape = (int(rng.integers(1, 70)), int(rng.integers(1, 70)))
        mask = rng.random(shape) < rng.uniform(0.3, 0.98)
        want = ndimage.binary_opening(mask, structure=np.ones((side, side), dtype=bool))
        np.testing.assert_array_equal(opening(mask, side), want)


def test_fifth_percentile_equals_numpy() -> None:
    rng = np.random.default_rng(0)
    for trial in range(400):
        shape = (int(rng.integers(1, 200)), int(rng.integers(1, 200)))
        if trial % 3 == 0:
            grey = rng.integers(0, 256, (*shape, 3), dtype=np.uint8).astype(np.float32) @ _LUMA
        elif trial % 3 == 1:
            grey = np.clip(rng.rayleigh(rng.uniform(1, 60), shape), 0, 255).astype(np.float32)
        else:
            grey = (rng.integers(0, 3, shape) * rng.integers(1, 90)).astype(np.float32)
        want = float(np.percentile(grey, 5))
        assert fifth_percentile(grey) == want, trial
        # With a cap: min(percentile, cap), also for caps just around the percentile.
        for cap in (30.0, 0.0, 0.5, 31.5, 254.5, -np.inf, want, want - 1, want + 0.999, want + 1.5):
            assert fifth_percentile(grey, cap) == min(want, cap), (trial, cap)


def random_level(kind: int, shape: tuple[int, int], rng: np.random.Generator) -> NDArray[Any]:
    """A float32 array of one of 9 kinds: lumas of random colours, whole numbers, block-mean
    like lumas with black pixels, speckle, the brighter of two lumas, values next to 1 whose
    means often fall on a float32 rounding tie, values spread over 2**80 (not exact in float64
    sums), negative values, and zeros with a -0.0."""
    lumas = rng.integers(0, 256, (*shape, 3), dtype=np.uint8).astype(np.float32) @ _LUMA
    if kind == 0:
        return lumas
    if kind == 1:
        return rng.integers(0, 256, shape).astype(np.float32)
    if kind == 2:
        lumas[rng.random(shape) < 0.3] = 0
        return lumas * np.float32(1 / int(rng.integers(1, 9)) ** 2)
    if kind == 3:
        return np.clip(rng.rayleigh(rng.uniform(1, 60), shape), 0, 255).astype(np.float32)
    if kind == 4:
        other = rng.integers(0, 256, (*shape, 3), dtype=np.uint8).astype(np.float32) @ _LUMA
        return np.maximum(lumas, other)
    if kind == 5:
        return (1 + rng.integers(-64, 64, shape) * 2.0**-24).astype(np.float32)
    if kind == 6:
        return np.exp(rng.uniform(-28, 28, shape)).astype(np.float32)
    if kind == 7:
        return (rng.standard_normal(shape) * 50).astype(np.float32)
    level = np.zeros(shape, dtype=np.float32)
    level[0, 0] = -0.0
    return level


@pytest.mark.parametrize("size", [2, 3, 4, 5, 6, 7, 8])
def test_uniform_mean_equals_scipy_bit_for_bit(size: int) -> None:
    """The window sums against scipy's running sums, bit for bit, odd and even windows,
    arrays smaller than the window (scipy is called) and values the sums would not hold
    exactly (scipy is called)."""
    rng = np.random.default_rng(size)
    summed = 0
    for trial in range(180):
        shape = (int(rng.integers(1, 90)), int(rng.integers(1, 90)))
        level = random_level(trial % 9, shape, rng)
        want = ndimage.uniform_filter(level, size=size)
        got = uniform_mean(level, size)
        assert got.dtype == np.float32 and got.shape == level.shape
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32), str(trial))
        summed += window_sums(level, size) is not None
    assert summed >= 80  # the first six kinds take the window sums


def test_uniform_mean_above_equals_scipy_and_a_threshold() -> None:
    """Thresholds that are means themselves, their float32 neighbours, and values between."""
    rng = np.random.default_rng(7)
    for trial in range(300):
        size = int(rng.integers(2, 8))
        shape = (int(rng.integers(size, 70)), int(rng.integers(size, 70)))
        level = random_level(trial % 6, shape, rng)
        mean = ndimage.uniform_filter(level, size=size)
        picks = rng.choice(mean.ravel(), 4)
        thresholds = [float(v) for v in picks] + list(rng.uniform(0, 40, 3)) + [3.0, -1.0]
        thresholds += [float(np.nextafter(v, np.float32(d))) for v in picks for d in (-1, 1)]
        thresholds += [float(v) * (1 + s * 2.0**-26) for v in picks for s in (-1, 1)]
        for threshold in thresholds:
            got = uniform_mean_above(level, size, threshold)
            np.testing.assert_array_equal(got, mean > threshold, str((trial, threshold)))


def test_largest_area_as_bincount_and_argmax() -> None:
    """Counted one area at a time or all at once: the lowest label among the largest."""
    rng = np.random.default_rng(11)
    for trial in range(300):
        mask = rng.random((int(rng.integers(2, 40)), int(rng.integers(2, 40)))) < 0.45
        if trial % 3 == 0:  # ties: the same blob several times
            mask[:] = False
            for x in range(0, mask.shape[1] - 2, 4):
                mask[:2, x : x + 2] = True
        labels, count = ndimage.label(mask)
        if count < 2:
            continue
        sizes = np.bincount(labels.ravel())[1:]
        largest = int(np.argmax(sizes)) + 1
        area, size = largest_area(labels.astype(np.uint16), count, int(np.count_nonzero(mask)))
        assert size == sizes[largest - 1]
        np.testing.assert_array_equal(area, labels == largest)


# --- below 480 pixels: identical to the reference ---------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_256_frames_give_the_reference_box(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(12):
        frame = busy_screen(256, 256, rng)
        for frames in ([frame], [frame[..., 1].copy()], [frame, np.roll(frame, 9, axis=1)]):
            assert find_box(frames) == reference_find_box(frames)


def test_frames_of_other_small_sizes_give_the_reference_box() -> None:
    rng = np.random.default_rng(99)
    for _ in range(60):
        rows, columns = int(rng.integers(12, 480)), int(rng.integers(12, 700))
        frame = busy_screen(rows, columns, rng)
        assert find_box([frame]) == reference_find_box([frame]), (rows, columns)


@pytest.mark.parametrize("end_colour_first", [True, False])
def test_a_row_half_one_colour_half_another_breaks_the_tie_as_before(
    end_colour_first: bool,
) -> None:
    """Rows exactly half grey 160 (at both ends) and half grey 96: a bar only when the end
    colour has the lower code (np.unique's first maximum), as in the reference."""
    frame = np.zeros((256, 256), dtype=np.uint8)
    frame[30:220, 40:216] = np.clip(np.random.default_rng(3).rayleigh(60, (190, 176)), 0, 255)
    ends, other = (96, 160) if end_colour_first else (160, 96)
    frame[:30] = other
    frame[:30, :64] = ends
    frame[:30, 192:] = ends
    got = find_box([frame])
    assert got == reference_find_box([frame])
    # a bar is cut off; otherwise the band joins the image below it
    assert got[0].y0 == (30 if end_colour_first else 0)


def test_frames_are_not_modified() -> None:
    frame = scanner_screen(480, 640, sector=True, seed=1)
    grey = frame[..., 0].copy()
    kept = frame.copy(), grey.copy()
    find_box([frame, frame])
    find_box([grey])
    np.testing.assert_array_equal(frame, kept[0])
    np.testing.assert_array_equal(grey, kept[1])


@pytest.mark.integration
def test_busi_test_images_give_the_reference_box(busi_dir: Path) -> None:
    with (busi_dir / "splits.csv").open(newline="") as fh:
        rels = [row["path"] for row in csv.DictReader(fh) if row["split"] == "test"]
    for rel in rels:
        frame = np.asarray(Image.open(busi_dir / rel).convert("RGB"))
        assert find_box([frame]) == reference_find_box([frame]), rel


# --- 480 pixels and up: worked on blocks, within a block of the reference ---------------


@pytest.mark.parametrize(
    ("rows", "columns"), [(480, 640), (600, 800), (720, 1280), (768, 1024), (1080, 1920)]
)
@pytest.mark.parametrize("sector", [False, True])
def test_large_screens_within_a_block_of_the_reference(
    rows: int, columns: int, sector: bool
) -> None:
    """Within ``k = min(rows, columns) // 240`` pixels (2 to 4 here; measured 1 to 4)."""
    frame = scanner_screen(rows, columns, sector, seed=rows)
    samples = [[frame]]
    if rows < 1000:  # the reference takes seconds on bigger frames
        brighter = np.clip(frame.astype(np.int16) + 5, 0, 255).astype(np.uint8)
        samples += [[frame[..., 0].copy()], [frame, brighter]]
    for sample in samples:
        got, note = find_box(sample)
        want, want_note = reference_find_box(sample)
        assert got.source == want.source == "heuristic" and note is want_note is None
        assert offset(got, want) <= min(rows, columns) // 240, (got, want)


def example_frames(name: str) -> list[NDArray[np.uint8]]:
    scan = read(Path(str(get_testdata_file(name))), ReadOptions(crop=False))
    picks = scan.selected_frames
    if len(picks) > HEURISTIC_SAMPLE_FRAMES:
        spots = np.linspace(0, len(picks) - 1, HEURISTIC_SAMPLE_FRAMES).round().astype(int)
        picks = [picks[i] for i in spots]
    return [frame for index, frame in scan.iter_frames() if index in picks]


@pytest.mark.parametrize(
    ("name", "tolerance"),
    [
        ("examples_ybr_color.dcm", 0),  # 320 x 240: no blocks
        ("examples_palette.dcm", 0),  # 800 x 350: no blocks
        ("examples_rgb_color.dcm", 0),
        ("examples_jpeg2k.dcm", 1),  # 640 x 480: 2 x 2 blocks, x1 634 -> 633
    ],
)
def test_pydicom_examples_against_the_reference(name: str, tolerance: int) -> None:
    frames = example_frames(name)
    got, want = find_box(frames)[0], reference_find_box(frames)[0]
    assert got.source == want.source == "heuristic"
    assert offset(got, want) <= tolerance, (got, want)
    assert read(Path(str(get_testdata_file(name)))).crop == got


# --- each frame decoded once ------------------------------------------------------------


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every DICOM frame index decoded from now on, in order."""
    indices: list[int] = []
    frames = DicomFrames.frames

    def counting(
        self: DicomFrames, wanted: Sequence[int]
    ) -> Iterator[tuple[int, NDArray[np.uint8]]]:
        for index, frame in frames(self, wanted):
            indices.append(index)
            yield index, frame

    monkeypatch.setattr(DicomFrames, "frames", counting)
    return indices


def test_a_png_is_decoded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(scanner_screen(256, 256, sector=True, seed=5)).save(tmp_path / "s.png")
    calls: list[Path] = []
    decode = ImageFrames._decode

    def counting_decode(self: ImageFrames) -> NDArray[np.uint8]:
        calls.append(self.path)
        return decode(self)

    monkeypatch.setattr(ImageFrames, "_decode", counting_decode)
    scan = read(tmp_path / "s.png")
    ((index, frame),) = scan.iter_frames()
    assert len(calls) == 1 and index == 0
    box = scan.crop
    assert box is not None and box.source == "heuristic"
    whole = np.asarray(Image.open(tmp_path / "s.png"))
    np.testing.assert_array_equal(frame, box.apply(whole))
    # The kept frame was handed over and forgotten: a second pass decodes again.
    ((_, again),) = scan.iter_frames()
    assert len(calls) == 2
    np.testing.assert_array_equal(again, frame)


def test_a_cine_decodes_each_selected_frame_once(decoded: list[int]) -> None:
    """16 of 30 frames are scored, 8 of those feed the heuristic and are not decoded again."""
    path = Path(str(get_testdata_file("examples_ybr_color.dcm")))
    scan = read(path)
    assert len(scan.selected_frames) == 16
    box = scan.crop
    assert box is not None and box.source == "heuristic"
    assert len(decoded) == HEURISTIC_SAMPLE_FRAMES
    frames = list(scan.iter_frames())
    assert [i for i, _ in frames] == scan.selected_frames
    assert sorted(decoded) == scan.selected_frames  # each one exactly once
    whole = dict(read(path, ReadOptions(crop=False)).iter_frames())
    for index, frame in frames:
        np.testing.assert_array_equal(frame, box.apply(whole[index]))
    # Nothing is kept after a pass: the next one decodes every selected frame again.
    del decoded[:]
    list(scan.iter_frames(cropped=False))
    assert decoded == scan.selected_frames


def test_an_uncropped_pass_first_decodes_once_per_pass(decoded: list[int]) -> None:
    scan = read(Path(str(get_testdata_file("examples_ybr_color.dcm"))))
    list(scan.iter_frames(cropped=False))  # no heuristic asked for
    assert decoded == scan.selected_frames
    del decoded[:]
    list(scan.iter_frames())  # the heuristic's 8 frames serve this pass too
    assert sorted(decoded) == scan.selected_frames

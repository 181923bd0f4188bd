"""The B-mode crop: Sequence of Ultrasound Regions first, the border heuristic otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from dicom_io import CropBox, ReadOptions, read
from dicom_io.borders import find_box
from tests.helpers.dicom import build, region, save, with_regions

ROWS, COLUMNS = 300, 400


def speckle(rows: int, columns: int, seed: int, level: float = 70.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.rayleigh(level, size=(rows, columns)), 0, 255)


def screen(seed: int = 0) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A scanner screen: B-mode above a spectral Doppler strip, text around, black elsewhere.
    Returns the RGB frame and the B-mode box."""
    frame = np.zeros((ROWS, COLUMNS, 3), dtype=np.uint8)
    bmode = (50, 20, 349, 159)
    x0, y0, x1, y1 = bmode
    frame[y0 : y1 + 1, x0 : x1 + 1] = speckle(y1 - y0 + 1, x1 - x0 + 1, seed)[..., None]
    # spectral Doppler: grey background line, bright velocity envelope
    t = np.arange(300)
    envelope = (60 + 40 * np.abs(np.sin(t / 15.0))).astype(int)
    for i, height in enumerate(envelope):
        frame[230 - height : 231, 50 + i] = 200
    frame[231, 50:350] = 120
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    draw.text((4, 4), "GEN 5C2 MI 1.1", fill=(255, 255, 255))
    draw.text((360, 40), "TIS 0.4", fill=(255, 255, 0))
    return np.asarray(image).copy(), bmode


def test_bmode_region_above_spectral_doppler(tmp_path: Path) -> None:
    frame, bmode = screen()
    ds = with_regions(
        build(frame, "RGB"),
        [
            region(*bmode, spatial=1, data_type=1),
            region(50, 170, 349, 289, spatial=3, data_type=3),  # PW spectral Doppler
        ],
    )
    path = save(ds, tmp_path / "duplex.dcm")
    scan = read(path)
    assert scan.crop == CropBox(*bmode, source="regions")
    assert scan.notes == []
    ((_, cropped),) = scan.iter_frames()
    x0, y0, x1, y1 = bmode
    np.testing.assert_array_equal(cropped, frame[y0 : y1 + 1, x0 : x1 + 1])


def test_doppler_listed_first_is_still_left_out(tmp_path: Path) -> None:
    frame, bmode = screen(1)
    ds = with_regions(
        build(frame, "RGB"),
        [
            region(50, 170, 349, 289, spatial=3, data_type=4),  # CW Doppler
            region(0, 290, 399, 299, spatial=4, data_type=10),  # ECG trace
            region(*bmode, spatial=1, data_type=1),
        ],
    )
    scan = read(save(ds, tmp_path / "r.dcm"))
    assert scan.crop == CropBox(*bmode, source="regions")


def test_colour_flow_2d_region_is_used_without_a_tissue_one(tmp_path: Path) -> None:
    frame, bmode = screen(2)
    ds = with_regions(build(frame, "RGB"), [region(*bmode, spatial=1, data_type=2)])
    assert read(save(ds, tmp_path / "cf.dcm")).crop == CropBox(*bmode, source="regions")


def test_largest_of_two_bmode_regions_wins(tmp_path: Path) -> None:
    frame, _ = screen(3)
    ds = with_regions(
        build(frame, "RGB"),
        [
            region(10, 10, 100, 100, spatial=1, data_type=1),
            region(150, 10, 390, 200, spatial=1, data_type=1),
        ],
    )
    assert read(save(ds, tmp_path / "dual.dcm")).crop == CropBox(150, 10, 390, 200, "regions")


def test_max_one_past_the_edge_is_clipped(tmp_path: Path) -> None:
    frame, _ = screen(4)
    ds = with_regions(build(frame, "RGB"), [region(20, 10, COLUMNS, ROWS, 1, 1)])
    crop = read(save(ds, tmp_path / "edge.dcm")).crop
    assert crop == CropBox(20, 10, COLUMNS - 1, ROWS - 1, "regions")


@pytest.mark.parametrize(
    "corners",
    [(50, 20, 799, 159), (50, 20, 349, 600), (349, 20, 50, 159), (50, 20, 53, 159)],
    ids=["too-wide", "too-tall", "reversed", "too-thin"],
)
def test_invalid_region_falls_back_to_the_heuristic(
    tmp_path: Path, corners: tuple[int, ...]
) -> None:
    frame, _ = screen(5)
    x0, y0, x1, y1 = corners
    ds = with_regions(build(frame, "RGB"), [region(x0, y0, x1, y1, spatial=1, data_type=1)])
    scan = read(save(ds, tmp_path / "bad.dcm"))
    assert scan.crop is not None and scan.crop.source == "heuristic"
    assert any("not used" in n for n in scan.notes)


def test_only_mmode_regions_fall_back_with_a_note(tmp_path: Path) -> None:
    frame, _ = screen(6)
    ds = with_regions(build(frame, "RGB"), [region(50, 20, 349, 159, 2, 1)])
    scan = read(save(ds, tmp_path / "m.dcm"))
    assert scan.crop is not None and scan.crop.source == "heuristic"
    assert any("no 2D B-mode image" in n for n in scan.notes)


def test_crop_off_gives_whole_frames(tmp_path: Path) -> None:
    frame, bmode = screen(7)
    ds = with_regions(build(frame, "RGB"), [region(*bmode, 1, 1)])
    scan = read(save(ds, tmp_path / "off.dcm"), ReadOptions(crop=False))
    assert scan.crop is None
    ((_, whole),) = scan.iter_frames()
    np.testing.assert_array_equal(whole, frame)


# --- the border heuristic -------------------------------------------------------------


def within(box: CropBox, want: tuple[int, int, int, int], tolerance: int) -> bool:
    got = (box.x0, box.y0, box.x1, box.y1)
    return all(abs(g - w) <= tolerance for g, w in zip(got, want, strict=True))


def test_heuristic_finds_the_image_under_a_header_bar_and_beside_text() -> None:
    frame = np.zeros((360, 480, 3), dtype=np.uint8)
    frame[:40] = (40, 60, 95)  # a blue header bar with text, right above the image
    image = (120, 44, 419, 329)
    x0, y0, x1, y1 = image
    frame[y0 : y1 + 1, x0 : x1 + 1] = speckle(y1 - y0 + 1, x1 - x0 + 1, seed=8)[..., None]
    picture = Image.fromarray(frame)
    draw = ImageDraw.Draw(picture)
    draw.text((10, 12), "HOSPITAL  PATIENT 01/02/2024", fill=(255, 255, 255))
    for row in range(60, 300, 20):
        draw.text((8, row), "Gn 60 C 61", fill=(255, 255, 255))
    draw.rectangle((455, 80, 465, 280), fill=(200, 200, 200))  # grey-scale bar
    box, note = find_box([np.asarray(picture)])
    assert note is None
    assert box.source == "heuristic"
    assert within(box, image, tolerance=3)


def test_heuristic_frames_a_sector_on_grey_frames() -> None:
    rows, columns = 300, 400
    y, x = np.mgrid[0:rows, 0:columns]
    angle = np.degrees(np.arctan2(x - 200, y - 10))
    radius = np.hypot(x - 200, y - 10)
    fan = (np.abs(angle) < 35) & (radius > 15) & (radius < 270)
    frame = np.where(fan, speckle(rows, columns, seed=9), 0).astype(np.uint8)
    ys, xs = np.nonzero(fan)
    box, _ = find_box([frame])
    assert within(box, (xs.min(), ys.min(), xs.max(), ys.max()), tolerance=4)


def test_heuristic_on_a_black_frame_keeps_the_whole_frame() -> None:
    box, note = find_box([np.zeros((100, 120), dtype=np.uint8)])
    assert box == CropBox(0, 0, 119, 99, "none")
    assert note is not None and "whole frame" in note


def test_heuristic_on_an_all_image_frame_keeps_the_whole_frame() -> None:
    frame = speckle(100, 120, seed=10).astype(np.uint8)
    box, note = find_box([frame])
    assert box == CropBox(0, 0, 119, 99, "none") and note is None


def test_heuristic_without_regions_in_a_file(tmp_path: Path) -> None:
    frame, _ = screen(11)
    scan = read(save(build(frame, "RGB"), tmp_path / "plain.dcm"))
    box = scan.crop
    assert box is not None and box.source == "heuristic"
    # the B-mode image and the Doppler strip are one block of signal; text stays out
    assert within(box, (50, 20, 349, 231), tolerance=4)

"""The real ultrasound files that pydicom ships: frames, shapes, crop boxes, metadata."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.pixels import pixel_array

from dicom_io import CropBox, ReadOptions, read
from dicom_io.regions import parse_regions


def example(name: str) -> Path:
    return Path(str(get_testdata_file(name)))


def inside(box: CropBox, outer: tuple[int, int, int, int]) -> bool:
    x0, y0, x1, y1 = outer
    return box.x0 >= x0 and box.y0 >= y0 and box.x1 <= x1 and box.y1 <= y1


def covers(box: CropBox, core: tuple[int, int, int, int]) -> bool:
    x0, y0, x1, y1 = core
    return box.x0 <= x0 and box.y0 <= y0 and box.x1 >= x1 and box.y1 >= y1


# name, frames, rows, columns, samples, photometric, transfer syntax UID
EXAMPLES = [
    ("examples_ybr_color.dcm", 30, 240, 320, 3, "YBR_FULL_422", "1.2.840.10008.1.2.4.50"),
    ("examples_palette.dcm", 1, 350, 800, 1, "PALETTE COLOR", "1.2.840.10008.1.2.1"),
    ("examples_rgb_color.dcm", 1, 240, 320, 3, "RGB", "1.2.840.10008.1.2.1"),
    ("examples_jpeg2k.dcm", 1, 480, 640, 3, "YBR_RCT", "1.2.840.10008.1.2.4.90"),
    ("ExplVR_BigEnd.dcm", 1, 60, 80, 3, "RGB", "1.2.840.10008.1.2.2"),
]


@pytest.mark.parametrize(
    ("name", "frames", "rows", "columns", "samples", "photometric", "syntax"),
    EXAMPLES,
    ids=[e[0] for e in EXAMPLES],
)
def test_header_facts(
    name: str, frames: int, rows: int, columns: int, samples: int, photometric: str, syntax: str
) -> None:
    scan = read(example(name))
    assert scan.kind == "dicom"
    assert (scan.frame_count, scan.rows, scan.columns) == (frames, rows, columns)
    assert scan.samples_per_pixel == samples
    assert scan.metadata["photometric"] == photometric
    assert scan.metadata["transfer_syntax"] == syntax
    assert scan.metadata["modality"] == "US"
    assert scan.skip_reason is None
    assert scan.selected_frames == sorted(set(scan.selected_frames))
    assert len(scan.selected_frames) == min(frames, 16)


@pytest.mark.parametrize("name", [e[0] for e in EXAMPLES])
def test_uncropped_frames_match_pydicom(name: str) -> None:
    """Without crop, every frame equals pydicom's own RGB decode (palette: applied)."""
    path = example(name)
    scan = read(path, ReadOptions(frames_to_score=0, crop=False))
    assert scan.crop is None
    for index, frame in scan.iter_frames():
        assert frame.dtype == np.uint8
        assert frame.shape == (scan.rows, scan.columns, 3)
        if scan.metadata["photometric"] == "PALETTE COLOR":
            continue  # checked below against the palette
        reference = pixel_array(path, index=index if scan.frame_count > 1 else None)
        if scan.metadata["transfer_syntax"] == "1.2.840.10008.1.2.4.50":
            # Lossy JPEG: libjpeg-turbo (Pillow) and libjpeg/GDCM (pydicom's choice, which
            # depends on the plugins installed) round the IDCT differently by a few levels.
            diff = np.abs(frame.astype(np.int16) - reference.astype(np.int16))
            assert diff.max() <= 4 and diff.mean() < 0.2
        else:
            np.testing.assert_array_equal(frame, reference)


def test_palette_frame_is_the_lut_applied() -> None:
    from pydicom.pixels import apply_color_lut

    path = example("examples_palette.dcm")
    ds = dcmread(path)
    want = apply_color_lut(ds.pixel_array, ds)
    want = np.rint(want / 257.0).astype(np.uint8) if want.max() > 255 else want
    scan = read(path, ReadOptions(crop=False))
    ((_, frame),) = scan.iter_frames()
    np.testing.assert_array_equal(frame, want)


def test_ybr_color_regions_say_a_bmode_region_too_big_for_the_frame() -> None:
    """The cine's region describes a 640 x 480 screen; the pixels are 320 x 240, so the
    region is not used and the heuristic finds the sector instead (with a note)."""
    ds = dcmread(example("examples_ybr_color.dcm"), stop_before_pixels=True)
    regions, _ = parse_regions(ds)
    assert [(r.spatial_format, r.data_type, r.x0, r.y0, r.x1, r.y1) for r in regions] == [
        (1, 1, 84, 31, 595, 414)
    ]
    scan = read(example("examples_ybr_color.dcm"))
    box = scan.crop
    assert box is not None and box.source == "heuristic"
    assert any("does not fit the 320 x 240 frame" in note for note in scan.notes)
    # The visible sector lies in x 40..300, y 14..210 (the region halved); the box stays
    # inside it, keeps the text columns and the tool bar out, and holds the heart.
    assert inside(box, (38, 12, 300, 210))
    assert covers(box, (100, 40, 230, 195))
    frames = list(scan.iter_frames())
    assert [i for i, _ in frames] == scan.selected_frames
    assert all(f.shape == (box.height, box.width, 3) for _, f in frames)


def test_palette_regions_say_bmode_and_a_trace_below_the_frame() -> None:
    """The Philips screen was cut to its top 350 rows: the B-mode region (to row 518) and
    the waveform region (rows 522..576) no longer fit, so the heuristic is used."""
    ds = dcmread(example("examples_palette.dcm"), stop_before_pixels=True)
    regions, _ = parse_regions(ds)
    assert [(r.spatial_format, r.data_type, r.x0, r.y0, r.x1, r.y1) for r in regions] == [
        (1, 1, 120, 60, 800, 518),
        (4, 10, 176, 522, 743, 576),
    ]
    scan = read(example("examples_palette.dcm"))
    box = scan.crop
    assert box is not None and box.source == "heuristic"
    assert any("region 1 (B-mode" in note for note in scan.notes)
    # Inside the (clipped) B-mode region, below the blue header bar, around the sector.
    assert inside(box, (120, 60, 799, 349))
    assert covers(box, (340, 72, 580, 150))
    ((_, frame),) = scan.iter_frames()
    assert frame.shape == (box.height, box.width, 3)


@pytest.mark.parametrize(
    ("name", "scale"), [("examples_rgb_color.dcm", 1), ("examples_jpeg2k.dcm", 2)]
)
def test_rgb_screens_crop_to_the_image_band(name: str, scale: int) -> None:
    """No regions: the heuristic keeps the image band and drops the text above and below."""
    scan = read(example(name))
    box = scan.crop
    assert box is not None and box.source == "heuristic"
    assert scan.notes == []
    assert inside(box, (0, 45 * scale, 320 * scale - 1, 180 * scale))
    assert covers(box, (20 * scale, 60 * scale, 300 * scale, 165 * scale))


def test_tiny_big_endian_frame_is_all_image() -> None:
    scan = read(example("ExplVR_BigEnd.dcm"))
    assert scan.crop == CropBox(0, 0, 79, 59, "none")
    ((_, frame),) = scan.iter_frames()
    assert frame.shape == (60, 80, 3)


def test_metadata_of_the_cine() -> None:
    meta = read(example("examples_ybr_color.dcm")).metadata
    assert meta["manufacturer"] == "SonoSite, Inc."
    assert meta["model_name"] == "Turbo"
    assert meta["software_versions"] == "51.80.108.010"
    assert meta["transducer"] == "50.80.103.002"
    assert meta["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.3.1"
    assert meta["study_datetime"] == "2016-05-03T12:08:50"
    assert meta["frame_time_ms"] == pytest.approx(33.333)
    assert (meta["rows"], meta["columns"], meta["frames"]) == (240, 320, 30)
    assert meta["operator"] is None and meta["patient_id_hash"] is None  # no salt
    json.dumps(meta)  # JSON-safe


def test_patient_id_is_hashed_with_the_salt_and_the_name_never_read() -> None:
    path = example("examples_rgb_color.dcm")
    meta = read(path, ReadOptions(pseudonym_salt="s3cret")).metadata
    want = hmac.new(b"s3cret", b"patient_id\x0013US1", hashlib.sha256).hexdigest()
    assert meta["patient_id_hash"] == want
    text = json.dumps(meta)
    assert "CompressedSamples" not in text and "13US1" not in text
    assert read(path, ReadOptions(pseudonym_salt="other")).metadata["patient_id_hash"] != want


def test_old_style_dates_are_parsed() -> None:
    meta = read(example("ExplVR_BigEnd.dcm")).metadata
    assert meta["study_datetime"] == "1997-04-24T14:04:38"

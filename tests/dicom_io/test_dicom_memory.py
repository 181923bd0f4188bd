"""A 500-frame 800 x 600 RGB cine is decoded frame by frame, never whole."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.uid import JPEGBaseline8Bit

from dicom_io import ReadOptions, read
from tests.helpers.dicom import encapsulated, smooth_image

FRAMES, ROWS, COLUMNS = 500, 600, 800
WHOLE_CINE_BYTES = FRAMES * ROWS * COLUMNS * 3  # 720 MB as uint8, 2.9 GB as float32


@pytest.fixture(scope="module")
def long_cine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frame = np.zeros((ROWS, COLUMNS, 3), dtype=np.uint8)
    frame[80:560, 100:700] = smooth_image(480, 600, colour=True, seed=1)
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=80, subsampling=1)
    ds = encapsulated(
        [buffer.getvalue()] * FRAMES, ROWS, COLUMNS, "YBR_FULL_422", 3, JPEGBaseline8Bit
    )
    path = tmp_path_factory.mktemp("cine") / "long_cine.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_header_read_does_not_touch_the_pixels(long_cine: Path) -> None:
    tracemalloc.start()
    try:
        scan = read(long_cine)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert scan.frame_count == FRAMES
    assert len(scan.selected_frames) == 16
    assert peak < 8 * 2**20  # the compressed cine alone is several MB


@pytest.mark.slow
def test_every_frame_decoded_with_bounded_memory(long_cine: Path) -> None:
    scan = read(long_cine, ReadOptions(frames_to_score=0))
    tracemalloc.start()
    try:
        count = 0
        for index, frame in scan.iter_frames():
            assert index == count
            assert frame.dtype == np.uint8 and frame.ndim == 3
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == FRAMES
    assert scan.crop is not None and scan.crop.source == "heuristic"
    # A few frames' worth: far below the 720 MB the whole cine takes as uint8.
    assert peak < 64 * 2**20 < WHOLE_CINE_BYTES / 10, f"peak {peak / 2**20:.1f} MiB"

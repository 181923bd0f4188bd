"""The bad inputs of the dicom_io issue, dropped into a watched folder: each file ends
`failed` or `skipped` with its reason, once; what is not a file is never recorded; the good
files beside them are scored."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import UID, ExplicitVRLittleEndian

from tests.helpers.dicom import build, encapsulated, jpeg_baseline, noise_image, save
from tests.helpers.files import write_png
from tests.integration.fault_stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _png_declaring(path: Path, width: int, height: int) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )
    return path


def bad_inputs(drop: Path) -> dict[str, tuple[str, str]]:
    """file name -> (final status, words its reason must contain)."""
    expected: dict[str, tuple[str, str]] = {}

    def put(name: str, status: str, words: str) -> Path:
        expected[name] = (status, words)
        return drop / name

    put("empty.dcm", "failed", "empty").write_bytes(b"")
    put("random.dcm", "failed", "not a DICOM, PNG or JPEG").write_bytes(
        np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    )
    ok = save(build(noise_image((2, 16, 20), seed=1), "MONOCHROME2"), drop.parent / "ok.dcm")
    put("cut-short.dcm", "failed", "cut short").write_bytes(ok.read_bytes()[:-100])
    cine = save(
        jpeg_baseline(np.stack([noise_image((32, 32), seed=s) for s in range(3)])),
        drop.parent / "cine.dcm",
    )
    put("cut-short-jpeg.dcm", "failed", "cut short").write_bytes(cine.read_bytes()[:-700])
    put("report.dcm", "failed", "holds no image").write_bytes(
        Path(str(get_testdata_file("test-SR.dcm"))).read_bytes()
    )
    for rows, frames, words in ((60000, 1, "USQA_MAX_PIXELS"), (64, 10000, "USQA_MAX_FRAMES")):
        ds = build(noise_image((4, 4), seed=2), "MONOCHROME2")
        ds.Rows, ds.Columns = rows, rows
        if frames > 1:
            ds.NumberOfFrames = frames
        save(ds, put(f"declares-{rows}-{frames}.dcm", "failed", words))
    video = encapsulated(
        [b"\x00\x00\x01\xb3" + bytes(100)], 16, 16, "YBR_FULL_422", 3, ExplicitVRLittleEndian
    )
    video.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.102")
    video.save_as(
        put("h264.dcm", "failed", "1.2.840.10008.1.2.4.102"),
        enforce_file_format=True,
        implicit_vr=False,
        little_endian=True,
    )
    ds = build(noise_image((16, 20), seed=3), "MONOCHROME2")
    ds.PixelData = bytes(ds.PixelData)[:-64]
    save(ds, put("length.dcm", "failed", "disagree"))
    _png_declaring(put("huge.png", "failed", "before decoding"), 100_000, 100_000)
    cut = write_png(drop.parent / "cut.png", 5, size=(64, 64)).read_bytes()
    put("cut.png", "failed", "cannot be decoded").write_bytes(cut[: len(cut) // 2])
    save(
        build(noise_image((16, 20), seed=7), "MONOCHROME2", modality="CT"),
        put("ct.dcm", "skipped", "modality CT"),
    )
    put("bad échographie ñ.dcm", "failed", "empty").write_bytes(b"")
    save(
        build(noise_image((2, 16, 20), seed=9), "MONOCHROME2"), put("good scan ü.dcm", "scored", "")
    )
    write_png(put("good.png", "scored", ""), 11)
    return expected


def test_bad_inputs_end_failed_or_skipped_with_their_reason(stack: Stack) -> None:
    stack.start_worker("a")
    staging = stack.tmp / "staging"
    staging.mkdir()
    expected = bad_inputs(staging)
    (staging / "a folder.dcm").mkdir()
    (staging / "dangling.dcm").symlink_to(stack.tmp / "gone.dcm")
    for path in sorted(staging.iterdir()):
        path.rename(stack.drop / path.name)
    stack.start_ingester()
    stack.wait_all_terminal(len(expected), 180)
    rows = stack.check_exactly_once([stack.drop / name for name in expected])
    for row in rows:
        status, words = expected[Path(row.path).name]
        assert row.status == status, (row.path, row.status, row.reason)
        assert words in (row.reason or ""), (row.path, row.reason)
        if status != "scored":
            assert row.reason and "\n" not in row.reason
    assert "dangling.dcm" in stack.log("ingest")  # reported, not recorded: nothing to read

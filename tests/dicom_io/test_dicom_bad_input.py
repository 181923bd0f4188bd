"""Every bad input gives one typed InputError whose one-line message names the file."""

from __future__ import annotations

import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import UID, ExplicitVRLittleEndian

from dicom_io import ReadOptions, read
from tests.helpers.dicom import base_dataset, build, encapsulated, jpeg_baseline, noise_image, save
from worker.errors import (
    CorruptFileError,
    InputError,
    LimitExceededError,
    NoPixelDataError,
    UnreadableFileError,
    UnsupportedFileError,
)


def fails(
    path: Path, kind: type[InputError], *words: str, options: ReadOptions | None = None
) -> str:
    """Reading (and decoding) ``path`` raises ``kind``; return its one-line message."""
    with pytest.raises(kind) as caught:
        scan = read(path, options)
        for _ in scan.iter_frames():
            pass
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(path)), message
    for word in words:
        assert word in message, message
    return message


def valid(tmp_path: Path, name: str = "ok.dcm") -> Path:
    return save(build(noise_image((2, 16, 20), seed=1), "MONOCHROME2"), tmp_path / name)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")
    fails(path, CorruptFileError, "empty (0 bytes)")


def test_random_bytes_named_dcm(tmp_path: Path) -> None:
    path = tmp_path / "random.dcm"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    fails(path, UnsupportedFileError, "not a DICOM, PNG or JPEG file")


def test_native_pixel_data_cut_short(tmp_path: Path) -> None:
    path = valid(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    fails(path, CorruptFileError, "cut short")


def test_compressed_pixel_data_cut_short(tmp_path: Path) -> None:
    frames = np.stack([noise_image((32, 32), seed=s) for s in range(3)])
    path = save(jpeg_baseline(frames), tmp_path / "cine.dcm")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 700])
    fails(path, CorruptFileError, "cut short")


def test_compressed_frame_damaged_inside(tmp_path: Path) -> None:
    """A fragment whose JPEG stream is garbage: found when that frame is decoded."""
    ds = encapsulated(
        [b"\xff\xd8\xff\xe0" + bytes(200)], 16, 16, "MONOCHROME2", 1, "1.2.840.10008.1.2.4.50"
    )
    path = save(ds, tmp_path / "garbage.dcm")
    fails(path, CorruptFileError, "frame 1 of 1 could not be decoded")


@pytest.mark.parametrize("source", ["generated", "pydicom"])
def test_structured_report_has_no_pixel_data(tmp_path: Path, source: str) -> None:
    if source == "pydicom":
        path = Path(str(get_testdata_file("test-SR.dcm")))
    else:
        ds = base_dataset("SR")
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = tmp_path / "report.dcm"
        ds.save_as(path, enforce_file_format=True)
    fails(path, NoPixelDataError, "holds no image")


def _declares(tmp_path: Path, rows: int, columns: int, frames: int) -> Path:
    ds = build(noise_image((4, 4), seed=2), "MONOCHROME2")
    ds.Rows, ds.Columns = rows, columns
    if frames > 1:
        ds.NumberOfFrames = frames
    return save(ds, tmp_path / f"big{rows}x{frames}.dcm")


def test_60000_by_60000_pixels_is_refused_before_decoding(tmp_path: Path) -> None:
    path = _declares(tmp_path, 60000, 60000, 1)
    start = time.perf_counter()
    fails(path, LimitExceededError, "60000 x 60000", "USQA_MAX_PIXELS", "before decoding")
    assert time.perf_counter() - start < 2.0


def test_10000_frames_is_refused_before_decoding(tmp_path: Path) -> None:
    path = _declares(tmp_path, 64, 64, 10000)
    fails(path, LimitExceededError, "10000 frames", "USQA_MAX_FRAMES")


def test_sample_budget(tmp_path: Path) -> None:
    path = _declares(tmp_path, 1000, 1000, 100)
    fails(path, LimitExceededError, "USQA_MAX_SAMPLES", options=ReadOptions(max_samples=50_000_000))


@pytest.mark.parametrize(
    ("uid", "words"),
    [
        ("1.2.840.10008.1.2.4.102", ("MPEG-4 AVC/H.264", "1.2.840.10008.1.2.4.102")),
        ("1.2.840.10008.1.2.4.100", ("MPEG2", "cannot be decoded")),
        ("1.2.3.4.99999", ("1.2.3.4.99999", "not one usqa knows")),
    ],
    ids=["h264", "mpeg2", "private"],
)
def test_unsupported_transfer_syntax_is_named(
    tmp_path: Path, uid: str, words: tuple[str, ...]
) -> None:
    ds = encapsulated(
        [b"\x00\x00\x01\xb3" + bytes(100)], 16, 16, "YBR_FULL_422", 3, ExplicitVRLittleEndian
    )
    ds.file_meta.TransferSyntaxUID = UID(uid)
    path = tmp_path / "video.dcm"
    ds.save_as(path, enforce_file_format=True, implicit_vr=False, little_endian=True)
    fails(path, UnsupportedFileError, *words)


@pytest.mark.parametrize("change", [-64, 64], ids=["shorter", "longer"])
def test_pixel_data_length_disagrees_with_header(tmp_path: Path, change: int) -> None:
    ds = build(noise_image((16, 20), seed=3), "MONOCHROME2")
    data = bytes(ds.PixelData)
    ds.PixelData = data[:change] if change < 0 else data + bytes(change)
    path = save(ds, tmp_path / "length.dcm")
    fails(path, CorruptFileError, "disagree")


def test_fewer_fragments_than_frames(tmp_path: Path) -> None:
    frames = np.stack([noise_image((16, 16), seed=s) for s in range(2)])
    ds = jpeg_baseline(frames)
    ds.NumberOfFrames = 5
    path = save(ds, tmp_path / "frames.dcm")
    fails(path, CorruptFileError, "5 frames", "2 fragment")


def test_unsupported_photometric(tmp_path: Path) -> None:
    ds = build(noise_image((16, 20, 3), seed=4), "RGB")
    ds.PhotometricInterpretation = "YBR_PARTIAL_420"
    fails(save(ds, tmp_path / "p.dcm"), UnsupportedFileError, "YBR_PARTIAL_420")


def test_missing_rows(tmp_path: Path) -> None:
    ds = build(noise_image((16, 20), seed=5), "MONOCHROME2")
    del ds.Rows
    fails(save(ds, tmp_path / "norows.dcm"), CorruptFileError, "no Rows")


def _png_with_size(path: Path, width: int, height: int) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


@pytest.mark.parametrize(
    ("width", "height"), [(100_000, 100_000), (12_000, 10_000)], ids=["pillow-bomb", "over-budget"]
)
def test_png_header_declaring_a_huge_image(tmp_path: Path, width: int, height: int) -> None:
    path = _png_with_size(tmp_path / "huge.png", width, height)
    fails(path, LimitExceededError, "before decoding")


def test_truncated_png(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "cut.png"
    Image.fromarray(noise_image((64, 64), seed=6)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    fails(path, CorruptFileError, "cannot be decoded")


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "a folder.dcm"
    folder.mkdir()
    fails(folder, UnreadableFileError, "is a folder")


def test_dangling_symlink(tmp_path: Path) -> None:
    link = tmp_path / "link.dcm"
    link.symlink_to(tmp_path / "gone.dcm")
    fails(link, UnreadableFileError, "dangling")


def test_missing_file(tmp_path: Path) -> None:
    fails(tmp_path / "nope.dcm", UnreadableFileError, "does not exist")


def test_fifo_is_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.dcm"
    os.mkfifo(fifo)
    fails(fifo, UnreadableFileError, "not a regular file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_by_mode(tmp_path: Path) -> None:
    path = valid(tmp_path)
    path.chmod(0)
    fails(path, UnreadableFileError, "permission denied")


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operating system refusing to open the file (as for a mode 000 file)."""
    path = valid(tmp_path)
    real_open = Path.open

    def refuse(self: Path, *args: object, **kwargs: object) -> object:
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", refuse)
    fails(path, UnreadableFileError, "permission denied")


@pytest.mark.parametrize("name", ["scan with spaces.dcm", "échographie_ñ_日本.dcm"])
def test_names_with_spaces_and_non_ascii(tmp_path: Path, name: str) -> None:
    good = valid(tmp_path, name)
    assert read(good).frame_count == 2
    bad = tmp_path / ("bad " + name)
    bad.write_bytes(b"")
    assert name in fails(bad, CorruptFileError, "empty")


def test_control_characters_in_a_name_stay_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "two\nlines.dcm"
    path.write_bytes(b"")
    with pytest.raises(CorruptFileError) as caught:
        read(path)
    assert "\n" not in str(caught.value) and "two?lines.dcm" in str(caught.value)


def test_other_modality_is_skipped_not_failed(tmp_path: Path) -> None:
    path = save(
        build(noise_image((16, 20), seed=7), "MONOCHROME2", modality="CT"), tmp_path / "ct.dcm"
    )
    scan = read(path)
    assert scan.skip_reason is not None and "modality CT" in scan.skip_reason
    assert read(path, ReadOptions(modalities=("US", "CT"))).skip_reason is None


def test_bare_dataset_without_preamble_is_read(tmp_path: Path) -> None:
    ds = build(noise_image((16, 20), seed=8), "MONOCHROME2")
    path = tmp_path / "bare.dcm"
    ds.save_as(path, implicit_vr=False, little_endian=True)  # no preamble, no file meta
    assert path.read_bytes()[128:132] != b"DICM"
    scan = read(path, ReadOptions(crop=False))
    ((_, frame),) = scan.iter_frames()
    np.testing.assert_array_equal(frame, np.asarray(ds.pixel_array))


def test_image_cut_before_its_pixel_data(tmp_path: Path) -> None:
    path = valid(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex(b"\xe0\x7f\x10\x00")])
    fails(path, CorruptFileError, "ends before its pixel data")

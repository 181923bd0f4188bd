"""PNG and JPEG exports: pixel modes, EXIF orientation, the sidecar, kind by content."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from dicom_io import ReadOptions, read
from tests.helpers.dicom import build, noise_image, save, smooth_image
from worker.errors import CorruptFileError

WHOLE = ReadOptions(crop=False)


def frame_of(path: Path, options: ReadOptions = WHOLE) -> np.ndarray:
    scan = read(path, options)
    assert scan.kind == "image"
    assert scan.frame_count == 1 and scan.selected_frames == [0]
    frames = list(scan.iter_frames())
    assert len(frames) == 1
    return frames[0][1]


def test_grey_8bit_png(tmp_path: Path) -> None:
    src = noise_image((30, 40), seed=1)
    Image.fromarray(src).save(tmp_path / "g.png")
    scan = read(tmp_path / "g.png")
    assert (scan.rows, scan.columns, scan.samples_per_pixel) == (30, 40, 1)
    assert scan.metadata["photometric"] == "MONOCHROME2"
    np.testing.assert_array_equal(frame_of(tmp_path / "g.png"), src)


def test_grey_16bit_png_is_scaled_to_8_bit(tmp_path: Path) -> None:
    src = noise_image((30, 40), seed=2, high=65536).astype(np.uint16)
    Image.fromarray(src).save(tmp_path / "g16.png")
    want = np.rint(src / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(frame_of(tmp_path / "g16.png"), want)


def test_rgb_png(tmp_path: Path) -> None:
    src = noise_image((30, 40, 3), seed=3)
    Image.fromarray(src).save(tmp_path / "c.png")
    np.testing.assert_array_equal(frame_of(tmp_path / "c.png"), src)


def test_rgba_png_is_composited_over_black(tmp_path: Path) -> None:
    src = noise_image((30, 40, 4), seed=4)
    Image.fromarray(src, mode="RGBA").save(tmp_path / "a.png")
    want = np.rint(src[..., :3] * (src[..., 3:4] / 255.0)).astype(np.uint8)
    got = frame_of(tmp_path / "a.png")
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_opaque_rgba_png_is_unchanged(tmp_path: Path) -> None:
    src = noise_image((30, 40, 4), seed=5)
    src[..., 3] = 255
    Image.fromarray(src, mode="RGBA").save(tmp_path / "o.png")
    np.testing.assert_array_equal(frame_of(tmp_path / "o.png"), src[..., :3])


def test_palette_png(tmp_path: Path) -> None:
    indices = noise_image((30, 40), seed=6, high=16)
    palette = noise_image((16, 3), seed=7)
    image = Image.fromarray(indices, mode="L").convert("P")
    image.putpalette(palette.ravel().tolist() + [0] * (768 - 48))
    image.putdata(indices.ravel().tolist())
    image.save(tmp_path / "p.png")
    scan = read(tmp_path / "p.png")
    assert scan.metadata["photometric"] == "PALETTE COLOR"
    np.testing.assert_array_equal(frame_of(tmp_path / "p.png"), palette[indices])


def test_grey_alpha_png(tmp_path: Path) -> None:
    src = noise_image((20, 24, 2), seed=8)
    src[..., 1] = 255
    Image.fromarray(src, mode="LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(frame_of(tmp_path / "la.png"), src[..., 0])


@pytest.mark.parametrize("colour", [True, False])
def test_jpeg_is_close(tmp_path: Path, colour: bool) -> None:
    src = smooth_image(48, 64, colour=colour, seed=9)
    Image.fromarray(src).save(tmp_path / "s.jpg", quality=95)
    got = frame_of(tmp_path / "s.jpg")
    assert got.shape == src.shape
    assert np.abs(got.astype(int) - src.astype(int)).mean() < 3.0


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_like_pillow(tmp_path: Path, orientation: int) -> None:
    src = noise_image((20, 30, 3), seed=10)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"
    Image.fromarray(src).save(path, exif=exif.tobytes())
    with Image.open(path) as im:
        want = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    scan = read(path, WHOLE)
    assert (scan.rows, scan.columns) == want.shape[:2]
    np.testing.assert_array_equal(frame_of(path), want)


def test_exif_rotated_jpeg(tmp_path: Path) -> None:
    src = smooth_image(40, 60, colour=True, seed=11)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    Image.fromarray(src).save(path, exif=exif.tobytes(), quality=95)
    scan = read(path, WHOLE)
    assert (scan.rows, scan.columns) == (60, 40)
    with Image.open(path) as im:
        want = np.asarray(ImageOps.exif_transpose(im))
    np.testing.assert_array_equal(frame_of(path), want)


def test_sidecar_maps_to_the_same_metadata(tmp_path: Path) -> None:
    path = tmp_path / "scan.png"
    Image.fromarray(noise_image((20, 20), seed=12)).save(path)
    sidecar = {
        "manufacturer": "Acme",
        "model_name": "Sono 9",
        "transducer": "L12-5",
        "operator": "Smith^Sam",
        "patient_id": "PID-1",
        "patient_name": "Doe^Jane",
        "study_datetime": "2024-01-31T09:30:15",
        "frame_time_ms": 40,
        "burned_in_annotation": True,
        "unknown_key": "ignored",
    }
    (tmp_path / "scan.png.json").write_text(json.dumps(sidecar), encoding="utf-8")
    meta = read(path, ReadOptions(pseudonym_salt="k")).metadata
    assert meta["manufacturer"] == "Acme" and meta["model_name"] == "Sono 9"
    assert meta["transducer"] == "L12-5"
    assert meta["study_datetime"] == "2024-01-31T09:30:15"
    assert meta["frame_time_ms"] == 40.0 and meta["burned_in_annotation"] is True
    want = hmac.new(b"k", b"patient_id\x00PID-1", hashlib.sha256).hexdigest()
    assert meta["patient_id_hash"] == want
    assert meta["operator"] is not None and meta["operator"].startswith("op-")
    text = json.dumps(meta)
    assert "Doe" not in text and "PID-1" not in text and "Smith" not in text
    assert "unknown_key" not in meta
    without_salt = read(path).metadata
    assert without_salt["operator"] is None and without_salt["patient_id_hash"] is None


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"], ids=["invalid", "not-object"])
def test_bad_sidecar_is_an_input_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "scan.png"
    Image.fromarray(noise_image((20, 20), seed=13)).save(path)
    (tmp_path / "scan.png.json").write_text(content, encoding="utf-8")
    with pytest.raises(CorruptFileError, match=r"scan\.png\.json: metadata sidecar"):
        read(path)


def test_kind_comes_from_content_not_extension(tmp_path: Path) -> None:
    png_named_dcm = tmp_path / "export.dcm"
    Image.fromarray(noise_image((10, 12), seed=14)).save(png_named_dcm, format="PNG")
    assert read(png_named_dcm).kind == "image"
    dicom_named_png = save(
        build(noise_image((10, 12), seed=15), "MONOCHROME2"), tmp_path / "scan.png"
    )
    assert read(dicom_named_png).kind == "dicom"


def test_images_are_cropped_by_the_heuristic(tmp_path: Path) -> None:
    frame = np.zeros((240, 320), dtype=np.uint8)
    rng = np.random.default_rng(16)
    frame[40:200, 60:260] = np.clip(rng.rayleigh(70, size=(160, 200)), 0, 255)
    Image.fromarray(frame).save(tmp_path / "screen.png")
    scan = read(tmp_path / "screen.png")
    box = scan.crop
    assert box is not None and box.source == "heuristic"
    assert abs(box.x0 - 60) <= 3 and abs(box.y0 - 40) <= 3
    assert abs(box.x1 - 259) <= 3 and abs(box.y1 - 199) <= 3
    ((_, cropped),) = scan.iter_frames()
    assert cropped.shape == (box.height, box.width)


# --- the libspng fast path for plain PNGs (dicom_io.images._decode_plain_png) ---


def _with_chunk(png: bytes, kind: bytes, data: bytes) -> bytes:
    """``png`` with one more chunk right after IHDR."""
    import struct
    import zlib

    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return png[:33] + struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc) + png[33:]


def _png_bytes(src: np.ndarray, **save: object) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(src).save(buffer, format="PNG", **save)
    return buffer.getvalue()


def _image_png(im: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    im.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg_bytes(src: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(src).save(buffer, format="JPEG")
    return buffer.getvalue()


def _interlaced(png: bytes) -> bytes:
    """``png`` with the IHDR interlace flag set (the header alone says Adam7)."""
    import zlib

    ihdr = bytearray(png[12:29])
    ihdr[16] = 1
    crc = (zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF).to_bytes(4, "big")
    return png[:12] + bytes(ihdr) + crc + png[33:]


@pytest.mark.parametrize("shape", [(30, 40), (30, 40, 3), (256, 256, 3)])
@pytest.mark.parametrize("extra", [None, (b"gAMA", (45455).to_bytes(4, "big")), "optimize"])
def test_plain_pngs_decode_to_pillows_pixels(
    tmp_path: Path, shape: tuple[int, ...], extra: object
) -> None:
    from dicom_io.images import _decode_plain_png

    pytest.importorskip("pyspng")
    src = noise_image(shape, seed=len(shape) * 7)
    png = _png_bytes(src, optimize=extra == "optimize")
    if isinstance(extra, tuple):
        png = _with_chunk(png, *extra)
    path = tmp_path / "plain.png"
    path.write_bytes(png)
    with Image.open(path) as im:
        want = np.asarray(im)
        size = im.size
    fast = _decode_plain_png(path, size)
    assert fast is not None, "a plain 8-bit PNG takes the libspng path"
    np.testing.assert_array_equal(fast, want)
    np.testing.assert_array_equal(frame_of(path), want)


def test_other_pngs_are_left_to_pillow(tmp_path: Path) -> None:
    from dicom_io.images import _decode_plain_png

    grey = noise_image((30, 40), seed=11)
    cases = {
        "16bit": _png_bytes(grey.astype(np.uint16) * 257),
        "rgba": _png_bytes(noise_image((30, 40, 4), seed=12)),
        "palette": _image_png(Image.fromarray(grey).convert("P")),
        "interlaced": _interlaced(_png_bytes(grey)),
        "trns": _with_chunk(_png_bytes(grey), b"tRNS", b"\x00\x00"),
        "jpeg": _jpeg_bytes(grey),
    }
    for name, png in cases.items():
        path = tmp_path / f"{name}.png"
        path.write_bytes(png)
        assert _decode_plain_png(path, (40, 30)) is None, name
    plain = tmp_path / "plain.png"
    plain.write_bytes(_png_bytes(grey))
    assert _decode_plain_png(plain, (41, 30)) is None, "a size other than the header's"


def test_a_damaged_plain_png_still_gets_pillows_message(tmp_path: Path) -> None:
    png = _png_bytes(noise_image((60, 80), seed=13))
    cut = tmp_path / "cut.png"
    cut.write_bytes(png[: len(png) // 2])
    scan = read(cut, WHOLE)
    with pytest.raises(CorruptFileError, match="cannot be decoded"):
        list(scan.iter_frames())


def test_pngs_decode_the_same_without_pyspng(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    src = noise_image((30, 40, 3), seed=14)
    path = tmp_path / "c.png"
    Image.fromarray(src).save(path)
    monkeypatch.setitem(sys.modules, "pyspng", None)  # import pyspng raises ImportError
    np.testing.assert_array_equal(frame_of(path), src)

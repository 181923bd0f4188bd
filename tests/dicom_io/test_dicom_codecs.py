"""Generated DICOM for each photometric interpretation and transfer syntax that can be
written here: decoded frames must equal the source (lossless) or stay close (lossy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels import convert_color_space, pixel_array
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from dicom_io import ReadOptions, read
from tests.helpers.dicom import build, jpeg_baseline, noise_image, save, smooth_image, to_planar

ALL = ReadOptions(frames_to_score=0, crop=False)


def decoded(path: Path) -> list[np.ndarray]:
    scan = read(path, ALL)
    frames = list(scan.iter_frames())
    assert [i for i, _ in frames] == list(range(scan.frame_count))
    for _, frame in frames:
        assert frame.dtype == np.uint8
    return [f for _, f in frames]


def stretch(values: np.ndarray) -> np.ndarray:
    """The documented per-frame mapping: minimum -> 0, maximum -> 255."""
    v = values.astype(np.float64)
    return np.clip(np.rint((v - v.min()) * 255.0 / (v.max() - v.min())), 0, 255).astype(np.uint8)


# --- photometric interpretations, native little endian --------------------------------


def test_monochrome2_8bit_is_unchanged(tmp_path: Path) -> None:
    src = noise_image((3, 40, 56), seed=1)
    path = save(build(src, "MONOCHROME2"), tmp_path / "m2.dcm")
    frames = decoded(path)
    assert len(frames) == 3
    for got, want in zip(frames, src, strict=True):
        np.testing.assert_array_equal(got, want)


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    src = noise_image((40, 56), seed=2)
    path = save(build(src, "MONOCHROME1"), tmp_path / "m1.dcm")
    np.testing.assert_array_equal(decoded(path)[0], 255 - src)


def test_monochrome2_16bit_without_window_is_stretched_per_frame(tmp_path: Path) -> None:
    src = noise_image((2, 32, 48), seed=3, high=4096).astype(np.uint16)
    src[1] //= 4  # a darker second frame is stretched on its own
    path = save(build(src, "MONOCHROME2", bits_stored=12), tmp_path / "m16.dcm")
    for got, want in zip(decoded(path), src, strict=True):
        np.testing.assert_array_equal(got, stretch(want))


def test_monochrome2_signed_16bit_is_stretched(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    src = rng.integers(-2000, 2000, size=(30, 40)).astype(np.int16)
    path = save(build(src, "MONOCHROME2", bits_stored=16), tmp_path / "signed.dcm")
    np.testing.assert_array_equal(decoded(path)[0], stretch(src))


def test_monochrome2_16bit_window_and_rescale(tmp_path: Path) -> None:
    src = noise_image((30, 40), seed=5, high=4096).astype(np.uint16)
    extra = {
        "RescaleSlope": "2",
        "RescaleIntercept": "-100",
        "WindowCenter": "3000",
        "WindowWidth": "4001",
    }
    path = save(build(src, "MONOCHROME2", bits_stored=12, extra=extra), tmp_path / "win.dcm")
    value = src.astype(np.float64) * 2 - 100
    want = np.clip(np.rint(((value - 2999.5) / 4000.0 + 0.5) * 255.0), 0, 255)
    np.testing.assert_array_equal(decoded(path)[0], want.astype(np.uint8))


def test_monochrome2_voi_lut_sequence(tmp_path: Path) -> None:
    src = noise_image((20, 24), seed=6, high=1024).astype(np.uint16)
    ds = build(src, "MONOCHROME2", bits_stored=10)
    item = Dataset()
    item.LUTDescriptor = [1024, 0, 16]
    lut = (np.sqrt(np.arange(1024) / 1023.0) * 65535).astype(np.uint16)
    item.LUTData = lut.astype("<u2").tobytes()
    ds.VOILUTSequence = [item]
    path = save(ds, tmp_path / "voi.dcm")
    want = np.rint(lut[src].astype(np.float64) * 255.0 / 65535.0).astype(np.uint8)
    np.testing.assert_array_equal(decoded(path)[0], want)


@pytest.mark.parametrize("planar", [0, 1])
def test_rgb_8bit_planar_configurations(tmp_path: Path, planar: int) -> None:
    src = noise_image((2, 24, 32, 3), seed=7)
    ds = build(src, "RGB")
    if planar:
        ds = to_planar(ds)
    path = save(ds, tmp_path / f"rgb{planar}.dcm")
    assert dcmread(path).PlanarConfiguration == planar
    for got, want in zip(decoded(path), src, strict=True):
        np.testing.assert_array_equal(got, want)


def test_rgb_16bit_is_scaled_by_bits_stored(tmp_path: Path) -> None:
    src = noise_image((16, 20, 3), seed=8, high=4096).astype(np.uint16)
    path = save(build(src, "RGB", bits_stored=12), tmp_path / "rgb16.dcm")
    want = np.rint(src.astype(np.float64) * 255.0 / 4095.0).astype(np.uint8)
    got = decoded(path)[0]
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1  # float32 rounding


def test_ybr_full_is_converted_to_rgb(tmp_path: Path) -> None:
    rgb = smooth_image(32, 48, colour=True, seed=9)
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    path = save(build(ybr, "YBR_FULL"), tmp_path / "ybr.dcm")
    got = decoded(path)[0]
    assert np.abs(got.astype(int) - rgb.astype(int)).max() <= 2  # colour-space rounding


def test_ybr_full_422_is_converted_to_rgb(tmp_path: Path) -> None:
    rgb = smooth_image(32, 48, colour=True, seed=10)
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    path = save(build(ybr, "YBR_FULL_422"), tmp_path / "ybr422.dcm")
    got = decoded(path)[0]
    error = np.abs(got.astype(int) - rgb.astype(int))
    assert error.mean() < 3.0  # chroma is shared by pixel pairs: lossy by design


def test_palette_colour_with_16bit_lut(tmp_path: Path) -> None:
    src = noise_image((20, 30), seed=11)
    ds = build(src, "PALETTE COLOR", bits_stored=8)
    ramp = np.arange(256, dtype=np.uint16)
    red, green, blue = ramp * 257, (255 - ramp) * 257, (ramp // 2) * 257
    for colour, values in (("Red", red), ("Green", green), ("Blue", blue)):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", values.astype("<u2").tobytes())
    path = save(ds, tmp_path / "palette.dcm")
    want = np.stack([src, 255 - src, src // 2], axis=-1).astype(np.uint8)
    np.testing.assert_array_equal(decoded(path)[0], want)


# --- transfer syntaxes ---------------------------------------------------------------

LOSSLESS_NATIVE = [
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
]


@pytest.mark.parametrize("syntax", LOSSLESS_NATIVE, ids=lambda u: u.name)
def test_native_syntaxes_8bit_rgb_and_16bit_grey(tmp_path: Path, syntax: str) -> None:
    rgb = noise_image((2, 20, 24, 3), seed=12)
    path = save(build(rgb, "RGB"), tmp_path / "rgb.dcm", syntax)
    assert dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    for got, want in zip(decoded(path), rgb, strict=True):
        np.testing.assert_array_equal(got, want)
    grey = noise_image((20, 24), seed=13, high=4096).astype(np.uint16)
    path = save(build(grey, "MONOCHROME2", bits_stored=12), tmp_path / "grey.dcm", syntax)
    np.testing.assert_array_equal(decoded(path)[0], stretch(grey))


LOSSLESS_CODECS = [RLELossless, JPEGLSLossless, JPEG2000Lossless]


@pytest.mark.parametrize("syntax", LOSSLESS_CODECS, ids=lambda u: u.name)
def test_lossless_codecs_are_exact(tmp_path: Path, syntax: str) -> None:
    rgb = noise_image((3, 64, 80, 3), seed=14)
    ds = build(rgb, "RGB")
    ds.compress(syntax, generate_instance_uid=False)
    path = save(ds, tmp_path / "rgb.dcm")
    assert dcmread(path).file_meta.TransferSyntaxUID == syntax
    for got, want in zip(decoded(path), rgb, strict=True):
        np.testing.assert_array_equal(got, want)
    grey = noise_image((2, 64, 80), seed=15)
    ds = build(grey, "MONOCHROME2")
    ds.compress(syntax, generate_instance_uid=False)
    path = save(ds, tmp_path / "grey.dcm")
    for got, want in zip(decoded(path), grey, strict=True):
        np.testing.assert_array_equal(got, want)


def test_jpeg_2000_colour_is_stored_as_ybr_rct(tmp_path: Path) -> None:
    rgb = noise_image((64, 80, 3), seed=16)
    ds = build(rgb, "RGB")
    ds.PhotometricInterpretation = "YBR_RCT"  # pixels are RGB; the encoder applies the RCT
    ds.compress(JPEG2000Lossless, generate_instance_uid=False)
    path = save(ds, tmp_path / "rct.dcm")
    assert dcmread(path).PhotometricInterpretation == "YBR_RCT"
    np.testing.assert_array_equal(decoded(path)[0], rgb)


def test_jpeg_ls_near_lossless_stays_within_its_error(tmp_path: Path) -> None:
    grey = smooth_image(32, 40, colour=False, seed=17)
    ds = build(grey, "MONOCHROME2")
    ds.compress(JPEGLSNearLossless, jls_error=2, generate_instance_uid=False)
    path = save(ds, tmp_path / "nl.dcm")
    assert np.abs(decoded(path)[0].astype(int) - grey.astype(int)).max() <= 2


@pytest.mark.parametrize("photometric", ["RGB", "YBR_ICT"])
def test_jpeg_2000_lossy_is_close(tmp_path: Path, photometric: str) -> None:
    rgb = smooth_image(64, 80, colour=True, seed=18)
    ds = build(rgb, "RGB")
    ds.PhotometricInterpretation = photometric  # YBR_ICT: the encoder applies the ICT
    ds.compress(JPEG2000, j2k_psnr=[45], generate_instance_uid=False)
    path = save(ds, tmp_path / "j2k.dcm")
    assert dcmread(path).PhotometricInterpretation == photometric
    error = np.abs(decoded(path)[0].astype(int) - rgb.astype(int))
    assert error.mean() < 2.0


@pytest.mark.parametrize("colour", [True, False], ids=["ybr_full_422", "monochrome2"])
def test_jpeg_baseline_multiframe_is_close(tmp_path: Path, colour: bool) -> None:
    frames = np.stack([smooth_image(48, 64, colour=colour, seed=s) for s in range(4)])
    path = save(jpeg_baseline(frames), tmp_path / "jpeg.dcm")
    got = decoded(path)
    assert len(got) == 4
    for g, want in zip(got, frames, strict=True):
        assert g.shape == want.shape
        assert np.abs(g.astype(int) - want.astype(int)).mean() < 3.0


def test_jpeg_lossless_process_14_is_exact(tmp_path: Path) -> None:
    gdcm = pytest.importorskip("gdcm", reason="python-gdcm writes JPEG lossless here")
    grey = noise_image((40, 48), seed=19, high=4096).astype(np.uint16)
    source = save(build(grey, "MONOCHROME2", bits_stored=12), tmp_path / "src.dcm")
    target = tmp_path / "jpegll.dcm"
    reader = gdcm.ImageReader()
    reader.SetFileName(str(source))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    writer.SetFileName(str(target))
    assert writer.Write()
    assert dcmread(target).file_meta.TransferSyntaxUID == JPEGLosslessSV1
    np.testing.assert_array_equal(decoded(target)[0], stretch(grey))


@pytest.mark.parametrize("name", ["JPGExtended.dcm", "SC_rgb_jpeg_dcmtk.dcm"])
def test_jpeg_extended_and_ybr_full_baseline_from_pydicom(name: str) -> None:
    """Syntaxes no installed encoder writes (JPEG extended 12-bit) are checked on
    pydicom's own test files against pydicom's decode and the documented mapping."""
    path = Path(str(get_testdata_file(name)))
    reference = pixel_array(path)
    got = decoded(path)[0]
    if reference.ndim == 2:
        np.testing.assert_array_equal(got, stretch(reference))
    else:
        np.testing.assert_array_equal(got, reference)


def test_frame_selection_decodes_the_chosen_frames(tmp_path: Path) -> None:
    frames = np.stack([np.full((8, 10), i * 10, dtype=np.uint8) for i in range(20)])
    path = save(build(frames, "MONOCHROME2"), tmp_path / "cine.dcm")
    scan = read(path, ReadOptions(frames_to_score=5, crop=False))
    assert scan.frame_count == 20
    assert scan.selected_frames == [0, 5, 10, 14, 19]
    for index, frame in scan.iter_frames():
        assert int(frame[0, 0]) == index * 10


def test_encapsulated_jpeg_frames_are_selected_not_all_decoded(tmp_path: Path) -> None:
    frames = np.stack([np.full((16, 16), i * 12, dtype=np.uint8) for i in range(12)])
    path = save(jpeg_baseline(frames), tmp_path / "cine.dcm")
    scan = read(path, ReadOptions(frames_to_score=3, crop=False))
    got = dict(scan.iter_frames())
    assert sorted(got) == [0, 6, 11]
    for index, frame in got.items():
        assert abs(int(frame.mean()) - index * 12) <= 2

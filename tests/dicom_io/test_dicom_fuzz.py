"""Property: mutated or truncated valid files raise nothing but the project's InputError."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from dicom_io import ReadOptions, read
from tests.helpers.dicom import build, jpeg_baseline, noise_image, region, save, with_regions
from worker.errors import InputError

OPTIONS = ReadOptions(frames_to_score=3, pseudonym_salt="fuzz")


def _seeds(folder: Path) -> dict[str, bytes]:
    """Small valid files of every kind and codec, as bytes."""
    files: dict[str, bytes] = {}
    grey = noise_image((3, 24, 32), seed=1)
    ds = with_regions(build(grey, "MONOCHROME2"), [region(2, 2, 29, 21, 1, 1)])
    files["native.dcm"] = save(ds, folder / "native.dcm").read_bytes()
    rgb = noise_image((2, 64, 64, 3), seed=2)
    files["bigendian.dcm"] = save(
        build(rgb, "RGB"), folder / "be.dcm", ExplicitVRBigEndian
    ).read_bytes()
    files["deflated.dcm"] = save(
        build(grey, "MONOCHROME2"), folder / "dfl.dcm", DeflatedExplicitVRLittleEndian
    ).read_bytes()
    for name, syntax in (
        ("rle.dcm", RLELossless),
        ("jls.dcm", JPEGLSLossless),
        ("j2k.dcm", JPEG2000Lossless),
    ):
        ds = build(rgb, "RGB")
        ds.compress(syntax, generate_instance_uid=False)
        files[name] = save(ds, folder / name).read_bytes()
    files["jpeg.dcm"] = save(jpeg_baseline(rgb), folder / "jpeg.dcm").read_bytes()
    for fmt in ("PNG", "JPEG"):
        buffer = io.BytesIO()
        Image.fromarray(rgb[0]).save(buffer, format=fmt)
        files[f"image.{fmt.lower()}"] = buffer.getvalue()
    return files


class Seeds(dict[str, bytes]):
    """The seed files; a short repr keeps hypothesis reports readable."""

    def __repr__(self) -> str:
        return f"<{len(self)} seed files>"


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Seeds:
    return Seeds(_seeds(tmp_path_factory.mktemp("seeds")))


def test_every_seed_is_valid(seeds: Seeds, tmp_path: Path) -> None:
    for name, data in seeds.items():
        path = tmp_path / name
        path.write_bytes(data)
        scan = read(path, OPTIONS)
        assert len(list(scan.iter_frames())) == len(scan.selected_frames) > 0, name


@st.composite
def mutations(draw: st.DrawFn, names: list[str]) -> tuple[str, str, int, bytes]:
    name = draw(st.sampled_from(names))
    kind = draw(st.sampled_from(["truncate", "overwrite", "insert", "header"]))
    position = draw(st.integers(min_value=0, max_value=1 << 20))
    payload = draw(st.binary(min_size=1, max_size=16))
    return name, kind, position, payload


def mutate(data: bytes, kind: str, position: int, payload: bytes) -> bytes:
    if kind == "truncate":
        return data[: position % len(data)]
    if kind == "header":  # aim at the header, where lengths and sizes live
        at = 128 + position % min(len(data) - 128, 900)
        return data[:at] + payload + data[at + len(payload) :]
    at = position % len(data)
    if kind == "insert":
        return data[:at] + payload + data[at:]
    return data[:at] + payload + data[at + len(payload) :]


SEED_NAMES = [
    "native.dcm",
    "bigendian.dcm",
    "deflated.dcm",
    "rle.dcm",
    "jls.dcm",
    "j2k.dcm",
    "jpeg.dcm",
    "image.png",
    "image.jpeg",
]


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=mutations(SEED_NAMES))
def test_mutated_files_raise_only_input_error(
    seeds: Seeds, tmp_path: Path, case: tuple[str, str, int, bytes]
) -> None:
    name, kind, position, payload = case
    path = tmp_path / f"mutant-{name}"
    path.write_bytes(mutate(seeds[name], kind, position, payload))
    try:
        scan = read(path, OPTIONS)
        frames = list(scan.iter_frames())
        assert scan.crop is not None
        for _, frame in frames:
            assert frame.dtype == np.uint8 and frame.ndim in (2, 3)
    except InputError as exc:
        message = str(exc)
        assert "\n" not in message and str(path) in message

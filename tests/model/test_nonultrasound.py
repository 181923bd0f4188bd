"""The not-ultrasound material: offline sources, disjoint splits, balanced reproducible samples."""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import logging
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from model import nonultrasound as nu


def _check_image(image: np.ndarray) -> None:
    assert image.dtype == np.uint8
    assert image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3), image.shape
    assert all(nu.MIN_SIDE <= side <= nu.MAX_SIDE for side in image.shape[:2]), image.shape
    assert image.flags.c_contiguous


@pytest.fixture
def reset_caches():  # type: ignore[no-untyped-def]
    """Availability is cached per process: forget it around a test that fakes the world."""
    nu._available.cache_clear()
    nu._skimage_data.cache_clear()
    yield
    nu._available.cache_clear()
    nu._skimage_data.cache_clear()


# ------------------------------------------------------------------ outputs


@pytest.mark.parametrize("split", nu.SPLITS)
@pytest.mark.parametrize("augment", [False, True])
def test_samples_are_uint8_grey_or_rgb_within_the_size_limits(split: str, augment: bool) -> None:
    images = nu.sample(split, 12, seed=5, augment=augment)
    assert len(images) == 12
    names = set(nu.sources(split))
    for item in images:
        _check_image(item.image)
        assert item.split == split
        assert item.category in nu.CATEGORIES
        assert item.source in names


@pytest.mark.parametrize(
    "shape", [(20, 30), (5000, 60), (60, 5000), (2000, 1500, 3), (1024, 1024), (127, 1025, 3)]
)
def test_fit_brings_any_shape_within_the_limits(shape: tuple[int, ...]) -> None:
    _check_image(nu._fit(np.zeros(shape, np.uint8)))


@pytest.mark.parametrize(
    ("generator", "variant"), sorted({(g, v) for g, _, v, _ in nu._SYNTHETIC_TABLE})
)
def test_every_synthetic_generator_is_a_function_of_its_seed(generator: str, variant: str) -> None:
    a = nu._generate(generator, variant, 123)
    b = nu._generate(generator, variant, 123)
    c = nu._generate(generator, variant, 124)
    assert a.dtype == np.uint8 and a.ndim in (2, 3)
    assert np.array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)
    _check_image(nu._fit(a))
    assert a.std() > 5, "a synthetic image should not be blank"


def test_the_same_seed_gives_the_same_sample_and_another_seed_does_not() -> None:
    a = nu.sample("train", 10, seed=42)
    b = nu.sample("train", 10, seed=42)
    c = nu.sample("train", 10, seed=43)
    assert [x.source for x in a] == [x.source for x in b]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))
    assert any(
        x.image.shape != y.image.shape or not np.array_equal(x.image, y.image)
        for x, y in zip(a, c, strict=True)
    )


def test_a_prefix_of_a_sample_is_the_smaller_sample() -> None:
    big, small = nu.sample("val", 8, seed=1), nu.sample("val", 4, seed=1)
    assert all(np.array_equal(x.image, y.image) for x, y in zip(small, big[:4], strict=True))


@pytest.mark.parametrize("split", nu.SPLITS)
def test_sample_balances_the_categories(split: str) -> None:
    cats = sorted({s.category for s in nu._available(split)}, key=nu.CATEGORIES.index)
    n = 3 * len(cats)
    counts = Counter(x.category for x in nu.sample(split, n, seed=0, augment=False))
    assert counts == dict.fromkeys(cats, 3)


def test_sample_visits_every_source_of_a_category_once_per_round() -> None:
    avail = nu._available("heldout")
    per_cat = {c: sum(s.category == c for s in avail) for c in nu.CATEGORIES}
    rounds = 2
    n = len(per_cat) * rounds * max(per_cat.values())
    items = nu.sample("heldout", n, seed=4, augment=False)
    for c, k in per_cat.items():
        first = [x.source for x in items if x.category == c][: rounds * k]
        assert set(Counter(first).values()) == {rounds}, c


def test_heldout_set_has_every_category_equally() -> None:
    items = nu.heldout_set(n_per_category=3, seed=0)
    assert Counter(x.category for x in items) == dict.fromkeys(nu.CATEGORIES, 3)
    assert {x.split for x in items} == {"heldout"}
    again = nu.heldout_set(n_per_category=3, seed=0)
    assert all(np.array_equal(x.image, y.image) for x, y in zip(items, again, strict=True))


def test_unknown_split_is_refused() -> None:
    with pytest.raises(ValueError, match="not one of"):
        nu.sample("test", 1, seed=0)


def test_loaded_files_are_cached_and_read_only() -> None:
    raw = nu._load("pydicom", "CT_small.dcm")
    assert nu._load("pydicom", "CT_small.dcm") is raw
    assert isinstance(raw, nu._Slice)
    assert not raw.frames[0].flags.writeable


# ------------------------------------------------------------------ splits


def test_every_source_and_file_is_in_exactly_one_split() -> None:
    names = [s.name for s in nu._SOURCES]
    assert len(names) == len(set(names))
    seen: dict[tuple[str, str], str] = {}
    for src in nu._FILE_SOURCES:
        assert src.split in nu.SPLITS and src.category in nu.CATEGORIES
        for item in src.items:
            key = (src.library, item)
            assert seen.setdefault(key, src.split) == src.split, f"{key} in two splits"
    offline = [set(nu.sources(split)) for split in nu.SPLITS]
    for i in range(len(offline)):
        for j in range(i + 1, len(offline)):
            assert not offline[i] & offline[j]


def test_synthetic_seed_ranges_are_disjoint_and_some_variants_are_heldout_only() -> None:
    ranges = sorted(nu.SEED_RANGES.values())
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(ranges))
    variants = {
        split: {s.items for s in nu._SYNTHETIC_SOURCES if s.split == split} for split in nu.SPLITS
    }
    heldout_only = variants["heldout"] - variants["train"] - variants["val"]
    assert {("report_page", "stix_cm"), ("chart", "alt_style"), ("stat_chart", "std")} <= (
        heldout_only
    )
    # the heldout-only fonts and chart styles are never used by a train or val variant
    for split in ("train", "val"):
        for gen, variant in variants[split]:
            assert variant not in ("stix_cm", "alt_style") and gen != "stat_chart"


def test_dark_mode_pages_train_only_in_the_training_fonts() -> None:
    dark = [s for s in nu._SYNTHETIC_SOURCES if s.items[1] == "dejavu_dark"]
    assert {s.items[0] for s in dark} == {"report_page", "text_page", "ui_form"}
    assert {s.split for s in dark} == {"train"}  # val and the held-out set keep their mix
    for gen in ("report_page", "text_page", "ui_form"):
        for seed in range(3):
            page = np.asarray(nu._generate(gen, "dejavu_dark", seed), dtype=np.float64)
            grey = page.mean(axis=2) if page.ndim == 3 else page
            assert np.median(grey) < 60  # the background is dark, the text light
            assert grey.max() > 180


def _dicom_items(split: str) -> list[str]:
    return [
        item
        for s in nu._FILE_SOURCES
        if s.library == "pydicom" and s.split == split
        for item in s.items
        if get_testdata_file(item, download=False) is not None
    ]


def _pixel_hash(name: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MR_small_padded: "excess padding to be removed"
        arr = nu._decode(pydicom.dcmread(str(get_testdata_file(name, download=False))))
    arr = arr.astype(arr.dtype.newbyteorder("="))
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def test_dicom_pixel_content_differs_across_splits() -> None:
    hashes = {split: {_pixel_hash(n) for n in _dicom_items(split)} for split in nu.SPLITS}
    assert all(hashes.values()), "every split has DICOM files"
    for a in nu.SPLITS:
        for b in nu.SPLITS:
            if a < b:
                assert not hashes[a] & hashes[b], (a, b)


def _thumb(frame: np.ndarray) -> np.ndarray:
    t = np.asarray(Image.fromarray(frame).resize((32, 32), Image.Resampling.BILINEAR), float)
    t = t.ravel()
    return (t - t.mean()) / (t.std() + 1e-9)


def test_no_slice_is_a_near_copy_of_a_slice_in_another_split() -> None:
    thumbs = []
    for src in nu._FILE_SOURCES:
        if src.category != "ct_mr" or src.library == "skimage":
            continue
        for item in src.items:
            if nu._loads(src.library, item):
                raw = nu._load(src.library, item)
                assert isinstance(raw, nu._Slice)
                thumbs += [(src.split, _thumb(f)) for f in raw.frames]
    for i, (split_a, a) in enumerate(thumbs):
        for split_b, b in thumbs[i + 1 :]:
            if split_a != split_b:
                assert float(np.mean(a * b)) < 0.97


# ------------------------------------------------------------------ categories and modalities


def test_heldout_has_every_category_without_scikit_image(
    reset_caches: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nu, "_skimage_data", lambda: None)
    for split in nu.SPLITS:
        assert not [name for name in nu.sources(split) if name.startswith("skimage:")]
    assert {s.category for s in nu._available("heldout")} == set(nu.CATEGORIES)
    assert "matplotlib:grace_hopper" in nu.sources("heldout")


def test_missing_scikit_image_is_logged_and_its_sources_absent(
    reset_caches: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "skimage" else real(name)
    )
    with caplog.at_level(logging.INFO, logger=nu.__name__):
        assert nu._skimage_data() is None
        names = nu.sources("train")
    assert "scikit-image is not importable" in caplog.text
    assert names and not [n for n in names if n.startswith("skimage:")]


def test_photos_from_scikit_image() -> None:
    pytest.importorskip("skimage")
    for split in nu.SPLITS:
        assert [n for n in nu.sources(split) if n.startswith("skimage:")]
    cat = nu._load("skimage", "cat")
    chelsea = nu._load("skimage", "chelsea")
    assert isinstance(cat, np.ndarray) and isinstance(chelsea, np.ndarray)
    assert np.array_equal(cat, chelsea), "cat and chelsea are one picture: one group"
    photos = [x for x in nu.sample("train", 40, seed=3) if x.category == "photo"]
    assert len(photos) == 10
    assert len({x.source for x in photos}) > 3
    for x in photos:
        _check_image(x.image)


@pytest.mark.parametrize("split", nu.SPLITS)
def test_no_listed_dicom_file_is_ultrasound(split: str) -> None:
    for name in _dicom_items(split):
        ds = pydicom.dcmread(str(get_testdata_file(name, download=False)), stop_before_pixels=True)
        assert str(ds.get("Modality", "")).upper() != "US", name
        assert str(ds.get("SOPClassUID", "")) not in nu._US_SOP_CLASSES, name


@pytest.mark.parametrize("name", ["examples_palette.dcm", "examples_ybr_color.dcm"])
def test_an_ultrasound_file_is_refused(name: str) -> None:
    path = Path(str(get_testdata_file(name, download=False)))
    with pytest.raises(nu._UltrasoundFileError, match="ultrasound"):
        nu._read_dicom(path)


def _mr(path: Path, frames: int, modality: str = "MR") -> Path:
    rng = np.random.default_rng(0)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.4")
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality = modality
    ds.set_pixel_data(
        rng.integers(0, 4000, (frames, 40, 50), dtype=np.uint16), "MONOCHROME2", bits_stored=12
    )
    ds.WindowCenter, ds.WindowWidth = 2000, 3000
    ds.save_as(path, enforce_file_format=True)
    return path


def test_multi_frame_slices_keep_several_frames_and_render_to_uint8(tmp_path: Path) -> None:
    raw = nu._read_dicom(_mr(tmp_path / "mr.dcm", frames=9))
    assert isinstance(raw, nu._Slice)
    assert len(raw.frames) == 4 and raw.windows == ((2000.0, 3000.0),)
    rng = np.random.default_rng(0)
    for _ in range(5):
        _check_image(nu._fit(nu._window(raw, rng)))


def test_a_us_modality_written_in_code_is_refused(tmp_path: Path) -> None:
    with pytest.raises(nu._UltrasoundFileError):
        nu._read_dicom(_mr(tmp_path / "us.dcm", frames=1, modality="US"))

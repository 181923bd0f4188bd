"""Images that are not ultrasound, for training and evaluating the "not ultrasound" gate.

Everything ships offline: synthetic generators (report pages, worksheets, text pages and
screenshot-like forms drawn with PIL in matplotlib's bundled fonts; charts and dashboards drawn
with matplotlib Agg), photographs bundled with scikit-image and matplotlib, and CT / MR / NM
slices bundled with pydicom and matplotlib. scikit-image is optional: without it, its sources
are absent (logged once). A listed file that is missing locally is absent too; nothing is
downloaded.

Categories: ``document`` (report pages, worksheets, text pages, UI forms, logos, scanned
text), ``chart`` (plots, dashboards, tables, test graphics), ``photo`` (photographs, micrographs,
icons), ``ct_mr`` (CT, MR and other non-ultrasound medical slices: NM, SEG masks, a phantom).

Splits. A source is a group: every image of it lies in exactly one split. Files (photos,
DICOM) are split by file, about 60/15/25 % per category; one image in several encodings or
crops is one group (``pydicom:MR_small`` is 8 files, ``skimage:chelsea`` is ``cat`` and
``chelsea``, the stereo pair is one group, ``pydicom:NM_bone`` is one scan in two codecs)::

    split    category  sources (groups)
    train    document  skimage:text, skimage:logo, pydicom:GDCMJ2K_TextGBR
             chart     skimage:colorwheel
             photo     skimage: astronaut, camera, coins, horse, hubble_deep_field,
                       immunohistochemistry, moon, retina, grass, microaneurysms,
                       lfw_subset, stereo_motorcycle; matplotlib:Minduka
             ct_mr     pydicom: CT_small, J2K_pixelrep_mismatch, NM_bone, liver_seg;
                       matplotlib:s1045
    val      document  matplotlib:logo2
             chart     skimage:checkerboard
             photo     skimage: chelsea, clock, brick
             ct_mr     pydicom:MR_small, skimage:shepp_logan
    heldout  document  skimage:page
             photo     matplotlib:grace_hopper; skimage: coffee, rocket, gravel, cell
             ct_mr     pydicom: 693_J2KI, examples_overlay

Synthetic sources are named ``generator:variant#split``; the split fixes the seed range of
the images (train seeds [0, 1e6), val [1e6, 1.1e6), heldout [2e6, 2.1e6)), and some variants
exist only in heldout, so that the held-out set is not just new seeds of training layouts::

    generator    category  variant    fonts / styles                              splits
    report_page  document  dejavu     DejaVu Sans, Serif, Mono                    train val heldout
    worksheet    document  dejavu     (same)                                      train val heldout
    text_page    document  dejavu     (same)                                      train val heldout
    ui_form      document  dejavu     (same)                                      train val heldout
    (all four)   document  stix_cm    STIX General, Computer Modern               heldout
    chart        chart     std        line bar scatter pie hist heatmap table;    train val heldout
                                      styles default classic ggplot bmh grayscale
                                      dark_background seaborn whitegrid/darkgrid
    dashboard    chart     std        2 to 4 of the kinds above (no table), maybe train val heldout
                                      under a band of KPI tiles
    chart        chart     alt_style  styles Solarize_Light2, fivethirtyeight     heldout
    stat_chart   chart     std        box, violin, error-bar, area plots          heldout

Left out of pydicom's files: every ultrasound one (``examples_*.dcm``, ``ExplVR_BigEnd.dcm``;
a Modality or SOP class of US raises), those that do not decode here (``JPEG-lossy.dcm``, the
``NM_bone`` scan again; ``JPEG2000-embedded-sequence-delimiter.dcm``; ``MR_truncated.dcm``),
16 x 16 and 10 x 10 slices (``dicomdirtests``, ``rtdose*``) and colour test patterns
(``SC_rgb_*``, ``image_dfl.dcm``).

``sample`` takes the categories in round robin, and within a category every source once per
round in a seeded order, so a source with many files weighs no more than a generator.
Every split has the four categories when scikit-image is present; without it, heldout still
has all four (grace_hopper, the DICOM slices, synthetic pages and charts) and val has no photo.

Augmentation (``augment=True``) acts on one image at a time, so it never mixes splits: random
crop, scale, rotation by 90/180/270, flip, brightness/contrast, greyscale, JPEG re-encode and
downsizing. DICOM slices are rendered with a header window (linear VOI after
``pydicom.pixels.apply_rescale``) or a random percentile window, frames chosen at random.
Outputs are uint8 (H, W) grey or (H, W, 3) RGB with every side in [128, 1024].
"""

from __future__ import annotations

import functools
import gzip
import importlib
import importlib.util
import inspect
import io
import logging
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

__all__ = ["CATEGORIES", "SPLITS", "NonUltrasoundImage", "heldout_set", "sample", "sources"]

_LOG = logging.getLogger(__name__)

CATEGORIES = ("document", "chart", "photo", "ct_mr")
SPLITS = ("train", "val", "heldout")
MIN_SIDE = 128
MAX_SIDE = 1024

#: seed ranges of the synthetic images, per split: [low, high)
SEED_RANGES = {
    "train": (0, 1_000_000),
    "val": (1_000_000, 1_100_000),
    "heldout": (2_000_000, 2_100_000),
}

#: SOP classes of ultrasound images (US, US multi-frame, and their retired forms)
_US_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.6.1",
        "1.2.840.10008.5.1.4.1.1.6",
        "1.2.840.10008.5.1.4.1.1.3.1",
        "1.2.840.10008.5.1.4.1.1.3",
    }
)


@dataclass(frozen=True, eq=False)
class NonUltrasoundImage:
    """One image that is not ultrasound (uint8 (H, W) or (H, W, 3)), with its provenance.

    Compared by identity (``eq=False``): the array has no meaningful ``==``."""

    image: np.ndarray
    category: str
    source: str
    split: str


@dataclass(frozen=True)
class _Source:
    """A group of images in one split: a file set (``library`` + ``items``) or a synthetic
    generator variant (``library == "synthetic"``, ``items == (generator, variant)``)."""

    name: str
    category: str
    split: str
    library: str
    items: tuple[str, ...]


_FILE_SOURCES: tuple[_Source, ...] = (
    # document
    _Source("skimage:text", "document", "train", "skimage", ("text",)),
    _Source("skimage:logo", "document", "train", "skimage", ("logo",)),
    _Source("pydicom:GDCMJ2K_TextGBR", "document", "train", "pydicom", ("GDCMJ2K_TextGBR.dcm",)),
    _Source("matplotlib:logo2", "document", "val", "matplotlib", ("logo2.png",)),
    _Source("skimage:page", "document", "heldout", "skimage", ("page",)),
    # chart (test graphics; the plots are synthetic)
    _Source("skimage:colorwheel", "chart", "train", "skimage", ("colorwheel",)),
    _Source("skimage:checkerboard", "chart", "val", "skimage", ("checkerboard",)),
    # photo
    _Source("skimage:astronaut", "photo", "train", "skimage", ("astronaut",)),
    _Source("skimage:camera", "photo", "train", "skimage", ("camera",)),
    _Source("skimage:coins", "photo", "train", "skimage", ("coins",)),
    _Source("skimage:horse", "photo", "train", "skimage", ("horse",)),
    _Source("skimage:hubble_deep_field", "photo", "train", "skimage", ("hubble_deep_field",)),
    _Source("skimage:immunohistochemistry", "photo", "train", "skimage", ("immunohistochemistry",)),
    _Source("skimage:moon", "photo", "train", "skimage", ("moon",)),
    _Source("skimage:retina", "photo", "train", "skimage", ("retina",)),
    _Source("skimage:grass", "photo", "train", "skimage", ("grass",)),
    _Source("skimage:microaneurysms", "photo", "train", "skimage", ("microaneurysms",)),
    _Source("skimage:lfw_subset", "photo", "train", "skimage", ("lfw_subset",)),
    _Source(
        "skimage:stereo_motorcycle",
        "photo",
        "train",
        "skimage",
        ("stereo_motorcycle/0", "stereo_motorcycle/1"),
    ),
    _Source(
        "matplotlib:Minduka", "photo", "train", "matplotlib", ("Minduka_Present_Blue_Pack.png",)
    ),
    _Source("skimage:chelsea", "photo", "val", "skimage", ("chelsea", "cat")),
    _Source("skimage:clock", "photo", "val", "skimage", ("clock",)),
    _Source("skimage:brick", "photo", "val", "skimage", ("brick",)),
    _Source("matplotlib:grace_hopper", "photo", "heldout", "matplotlib", ("grace_hopper.jpg",)),
    _Source("skimage:coffee", "photo", "heldout", "skimage", ("coffee",)),
    _Source("skimage:rocket", "photo", "heldout", "skimage", ("rocket",)),
    _Source("skimage:gravel", "photo", "heldout", "skimage", ("gravel",)),
    _Source("skimage:cell", "photo", "heldout", "skimage", ("cell",)),
    # ct_mr
    _Source("pydicom:CT_small", "ct_mr", "train", "pydicom", ("CT_small.dcm",)),
    _Source(
        "pydicom:J2K_pixelrep_mismatch", "ct_mr", "train", "pydicom", ("J2K_pixelrep_mismatch.dcm",)
    ),
    _Source("pydicom:NM_bone", "ct_mr", "train", "pydicom", ("JPGExtended.dcm", "JPEG2000.dcm")),
    _Source(
        "pydicom:liver_seg",
        "ct_mr",
        "train",
        "pydicom",
        ("liver_1frame.dcm", "liver_expb_1frame.dcm"),
    ),
    _Source("matplotlib:s1045", "ct_mr", "train", "matplotlib", ("s1045.ima.gz",)),
    _Source(
        "pydicom:MR_small",
        "ct_mr",
        "val",
        "pydicom",
        (
            "MR_small.dcm",
            "MR_small_RLE.dcm",
            "MR_small_bigendian.dcm",
            "MR_small_expb.dcm",
            "MR_small_implicit.dcm",
            "MR_small_jp2klossless.dcm",
            "MR_small_jpeg_ls_lossless.dcm",
            "MR_small_padded.dcm",
        ),
    ),
    _Source("skimage:shepp_logan", "ct_mr", "val", "skimage", ("shepp_logan_phantom",)),
    _Source("pydicom:693_J2KI", "ct_mr", "heldout", "pydicom", ("693_J2KI.dcm",)),
    _Source("pydicom:examples_overlay", "ct_mr", "heldout", "pydicom", ("examples_overlay.dcm",)),
)

_ALL_SPLITS = SPLITS
#: (generator, category, variant, splits)
_SYNTHETIC_TABLE: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("report_page", "document", "dejavu", _ALL_SPLITS),
    ("worksheet", "document", "dejavu", _ALL_SPLITS),
    ("text_page", "document", "dejavu", _ALL_SPLITS),
    ("ui_form", "document", "dejavu", _ALL_SPLITS),
    ("report_page", "document", "stix_cm", ("heldout",)),
    ("worksheet", "document", "stix_cm", ("heldout",)),
    ("text_page", "document", "stix_cm", ("heldout",)),
    ("ui_form", "document", "stix_cm", ("heldout",)),
    ("chart", "chart", "std", _ALL_SPLITS),
    ("dashboard", "chart", "std", _ALL_SPLITS),
    ("chart", "chart", "alt_style", ("heldout",)),
    ("stat_chart", "chart", "std", ("heldout",)),
)

_SYNTHETIC_SOURCES: tuple[_Source, ...] = tuple(
    _Source(f"{gen}:{variant}#{split}", category, split, "synthetic", (gen, variant))
    for gen, category, variant, splits in _SYNTHETIC_TABLE
    for split in splits
)

_SOURCES: tuple[_Source, ...] = _SYNTHETIC_SOURCES + _FILE_SOURCES


class _UltrasoundFileError(ValueError):
    """A DICOM file listed as a source is ultrasound: a bug in the source table."""


# --------------------------------------------------------------------------- public API


def sources(split: str) -> list[str]:
    """Names of the sources (groups) available offline in ``split``, in table order."""
    return [s.name for s in _available(_check_split(split))]


def sample(split: str, n: int, seed: int, augment: bool = True) -> list[NonUltrasoundImage]:
    """``n`` images of ``split``: categories in round robin over those available there, and
    within a category every source once per round in a seeded random order. The same
    ``seed`` gives the same images, and the first ``m`` images of a larger sample."""
    avail = _available(_check_split(split))
    by_cat = {c: [s for s in avail if s.category == c] for c in CATEGORIES}
    cats = [c for c in CATEGORIES if by_cat[c]]
    if not cats:
        raise RuntimeError(f"no non-ultrasound source is available offline in split {split!r}")
    out = []
    for i in range(n):
        k, category = i // len(cats), cats[i % len(cats)]
        pool = by_cat[category]
        block, pos = divmod(k, len(pool))
        key = [seed, SPLITS.index(split), CATEGORIES.index(category), block]
        src = pool[int(np.random.default_rng(key).permutation(len(pool))[pos])]
        rng = np.random.default_rng([seed, SPLITS.index(split), i])
        image = _render(src, rng)
        if augment:
            image = _augment(image, rng)
        out.append(NonUltrasoundImage(_fit(image), category, src.name, split))
    return out


def heldout_set(n_per_category: int = 50, seed: int = 0) -> list[NonUltrasoundImage]:
    """The fixed evaluation set: ``n_per_category`` augmented held-out images per category
    available offline (all four when the bundled files are present)."""
    cats = {s.category for s in _available("heldout")}
    return sample("heldout", n_per_category * len(cats), seed=seed, augment=True)


# --------------------------------------------------------------------------- sources


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {SPLITS}")
    return split


@functools.cache
def _available(split: str) -> tuple[_Source, ...]:
    out = []
    for src in _SOURCES:
        if src.split != split:
            continue
        if src.library == "synthetic":
            out.append(src)
            continue
        if src.library == "skimage" and _skimage_data() is None:
            continue
        ok_items = [item for item in src.items if _loads(src.library, item)]
        if ok_items:
            out.append(src)
    return tuple(out)


@functools.cache
def _loads(library: str, item: str) -> bool:
    try:
        _load(library, item)
    except _UltrasoundFileError:
        raise
    except Exception as exc:  # a missing or undecodable bundled file: the source is absent
        _LOG.info("non-ultrasound source %s:%s is absent: %s", library, item, exc)
        return False
    return True


@functools.lru_cache(maxsize=1)
def _skimage_data() -> Any | None:
    if importlib.util.find_spec("skimage") is None:
        _LOG.info("scikit-image is not importable: its photo, page and phantom sources are absent")
        return None
    try:
        return importlib.import_module("skimage.data")
    except Exception as exc:
        _LOG.info("scikit-image failed to import (%s): its sources are absent", exc)
        return None


@dataclass(frozen=True)
class _Slice:
    """A decoded DICOM or raw slice: frames after the modality LUT, header windows."""

    frames: tuple[np.ndarray, ...]
    windows: tuple[tuple[float, float], ...]
    invert: bool


@functools.cache
def _load(library: str, item: str) -> np.ndarray | _Slice:
    """One bundled image, read once per process (read-only arrays)."""
    if library == "skimage":
        result: np.ndarray | _Slice = _load_skimage(item)
    elif library == "matplotlib":
        result = _load_matplotlib(item)
    elif library == "pydicom":
        result = _load_dicom(item)
    else:
        raise ValueError(f"unknown library {library!r}")
    arrays = result.frames if isinstance(result, _Slice) else (result,)
    for a in arrays:
        a.setflags(write=False)
    return result


def _load_skimage(item: str) -> np.ndarray | _Slice:
    data = _skimage_data()
    if data is None:
        raise ModuleNotFoundError("scikit-image is not importable")
    name, _, index = item.partition("/")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = getattr(data, name)()
    if index:
        value = value[int(index)]
    a = np.asarray(value)
    if name == "lfw_subset":  # 200 faces of 25 x 25 in [0, 1]: kept as is, tiled at render
        return np.ascontiguousarray(np.clip(a * 255.0, 0, 255).astype(np.uint8))
    if name == "shepp_logan_phantom":
        return _Slice((a.astype(np.float32),), (), False)
    return _to_uint8_image(a)


def _load_matplotlib(item: str) -> np.ndarray | _Slice:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / item
    if item.endswith(".ima.gz"):  # a 256 x 256 big-endian uint16 MR slice
        raw = np.frombuffer(gzip.decompress(path.read_bytes()), dtype=">u2")
        side = round(float(np.sqrt(raw.size)))
        if side * side != raw.size:
            raise ValueError(f"{item}: {raw.size} pixels is not a square slice")
        return _Slice((raw.reshape(side, side).astype(np.float32),), (), False)
    with Image.open(path) as im:
        return _to_uint8_image(np.asarray(im))


def _check_not_ultrasound(ds: Any, name: str) -> None:
    """Raise when a dataset is ultrasound (Modality US or an ultrasound SOP class)."""
    modality = str(ds.get("Modality", "") or "").upper()
    sop = str(ds.get("SOPClassUID", "") or "")
    if modality == "US" or sop in _US_SOP_CLASSES:
        raise _UltrasoundFileError(
            f"{name}: Modality {modality or '-'} / SOP class {sop or '-'} is ultrasound; "
            "the not-ultrasound sources must never use it (fix the source table)"
        )


def _dicom_path(name: str) -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        raise FileNotFoundError(f"{name}: not among pydicom's local test files")
    return Path(str(path))


def _load_dicom(name: str) -> np.ndarray | _Slice:
    return _read_dicom(_dicom_path(name))


def _read_dicom(path: Path) -> np.ndarray | _Slice:
    """A DICOM file as a slice (grey: up to 4 frames evenly spaced) or an RGB image;
    the header is checked first, and an ultrasound file raises."""
    import pydicom
    from pydicom.pixels import apply_rescale

    name = path.name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _check_not_ultrasound(pydicom.dcmread(path, stop_before_pixels=True), name)
        ds = pydicom.dcmread(path)
        arr = _decode(ds)
    frames_n = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    if spp == 3:  # colour secondary capture: the first frame as RGB
        return _to_uint8_image(arr[0] if frames_n > 1 else arr)
    stack = arr if frames_n > 1 else arr[None]
    picks = np.unique(np.linspace(0, len(stack) - 1, min(len(stack), 4)).round().astype(int))
    frames = tuple(
        np.asarray(apply_rescale(stack[k].astype(arr.dtype.newbyteorder("=")), ds), np.float32)
        for k in picks
    )
    centers, widths = ds.get("WindowCenter"), ds.get("WindowWidth")
    windows: tuple[tuple[float, float], ...] = ()
    if centers is not None and widths is not None:
        cs = list(centers) if isinstance(centers, Sequence | np.ndarray) else [centers]
        ws = list(widths) if isinstance(widths, Sequence | np.ndarray) else [widths]
        windows = tuple((float(c), float(w)) for c, w in zip(cs, ws, strict=False) if float(w) > 1)
    invert = str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1"
    return _Slice(frames, windows, invert)


def _decode(ds: Any) -> np.ndarray:
    """All frames, decoded without GDCM (as dicom_io does: it can abort the process, and it
    logs an error before pydicom falls back to another plugin)."""
    from pydicom.pixels import get_decoder, pixel_array

    syntax = ds.file_meta.TransferSyntaxUID
    plugins = [""]
    if syntax.is_compressed:
        available = get_decoder(syntax).available_plugins
        # pylibjpeg first: it reads every codec used here; Pillow fails on some J2K streams
        plugins = sorted((p for p in available if p != "gdcm"), key=lambda p: p != "pylibjpeg")
        plugins = plugins or [""]
    for plugin in plugins[:-1]:
        try:
            return np.asarray(pixel_array(ds, decoding_plugin=plugin))
        except Exception as exc:
            _LOG.debug("%s could not decode %s: %s", plugin, syntax.name, exc)
    return np.asarray(pixel_array(ds, decoding_plugin=plugins[-1]))


def _to_uint8_image(a: np.ndarray) -> np.ndarray:
    """Any bundled array to uint8 (H, W) or (H, W, 3); alpha composited on white."""
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = a.astype(np.float64)
        hi = 1.0 if a.max() <= 1.0 else (255.0 if a.max() <= 255 else float(a.max()))
        a = np.clip(a / hi * 255.0, 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[-1] == 4:
        alpha = a[..., 3:4].astype(np.float32) / 255.0
        a = (a[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)):
        raise ValueError(f"unexpected image shape {a.shape}")
    return np.ascontiguousarray(a)


# --------------------------------------------------------------------------- rendering


def _render(src: _Source, rng: np.random.Generator) -> np.ndarray:
    if src.library == "synthetic":
        lo, hi = SEED_RANGES[src.split]
        return _generate(src.items[0], src.items[1], int(rng.integers(lo, hi)))
    items = [it for it in src.items if _loads(src.library, it)]
    item = items[int(rng.integers(len(items)))]
    raw = _load(src.library, item)
    if isinstance(raw, _Slice):
        return _window(raw, rng)
    if item == "lfw_subset":
        return _mosaic(raw, rng)
    return raw.copy()


def _window(sl: _Slice, rng: np.random.Generator) -> np.ndarray:
    """A random frame at a header window (DICOM linear VOI) or a percentile window."""
    x = sl.frames[int(rng.integers(len(sl.frames)))]
    if sl.windows and rng.random() < 0.6:
        c, w = sl.windows[int(rng.integers(len(sl.windows)))]
        y = (x - (c - 0.5)) / (w - 1.0) + 0.5
    else:
        lo_p, hi_p = rng.uniform(0.0, 3.0), rng.uniform(97.0, 100.0)
        lo, hi = np.percentile(x, [lo_p, hi_p])
        if hi <= lo:
            lo, hi = float(x.min()), float(x.max()) + 1e-6
        y = (x - lo) / (hi - lo)
    out = (np.clip(y, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return 255 - out if sl.invert else out


def _mosaic(faces: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A k x k grid of the 25 x 25 face crops (a contact sheet of small photos)."""
    k = int(rng.integers(4, 9))
    idx = rng.choice(len(faces), size=k * k, replace=False)
    side = faces.shape[1]
    tiles = faces[idx].reshape(k, k, side, side)
    return np.ascontiguousarray(tiles.transpose(0, 2, 1, 3).reshape(k * side, k * side))


def _generate(generator: str, variant: str, seed: int) -> np.ndarray:
    """One synthetic image of ``generator`` in ``variant``, a function of ``seed`` only."""
    rng = np.random.default_rng([seed, zlib.crc32(f"{generator}:{variant}".encode())])
    if generator in _DOC_GENERATORS:
        family = _FONT_FAMILIES[variant]
        styles = list(family)
        fonts = family[styles[int(rng.integers(len(styles)))]]
        return _DOC_GENERATORS[generator](rng, fonts)
    if generator in ("chart", "stat_chart", "dashboard"):
        styles_ = _CHART_STYLES[variant]
        return _chart_image(rng, styles_[int(rng.integers(len(styles_)))], generator)
    raise ValueError(f"unknown generator {generator!r}")


def _augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random crop, scale, rotation, flip, brightness/contrast, greyscale, JPEG, downsizing."""
    a = image
    h, w = a.shape[:2]
    if rng.random() < 0.5:  # crop
        ch, cw = int(h * rng.uniform(0.55, 1.0)), int(w * rng.uniform(0.55, 1.0))
        y0, x0 = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
        a = a[y0 : y0 + ch, x0 : x0 + cw]
    if rng.random() < 0.4:  # scale
        a = _resize(a, rng.uniform(0.6, 1.6))
    if rng.random() < 0.3:
        a = np.rot90(a, k=int(rng.integers(1, 4)))
    if rng.random() < 0.25:
        a = a[:, ::-1]
    if rng.random() < 0.15:
        a = a[::-1]
    if rng.random() < 0.5:  # brightness / contrast
        gain, offset = rng.uniform(0.7, 1.3), rng.uniform(-35.0, 35.0)
        mean = float(a.mean())
        a = np.clip((a.astype(np.float32) - mean) * gain + mean + offset, 0, 255).astype(np.uint8)
    if a.ndim == 3 and rng.random() < 0.3:
        a = _grey(a)
    if rng.random() < 0.2:  # downsizing: a small thumbnail-like image
        a = _resize(a, rng.uniform(MIN_SIDE, 2 * MIN_SIDE) / min(a.shape[:2]))
    if rng.random() < 0.3:
        a = _jpeg(a, int(rng.integers(25, 96)))
    return np.ascontiguousarray(a)


def _grey(a: np.ndarray) -> np.ndarray:
    return (a[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(
        np.uint8
    )


def _jpeg(a: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im).copy()


def _resize(a: np.ndarray, factor: float) -> np.ndarray:
    h, w = a.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    if size == (w, h):
        return a
    im = Image.fromarray(np.ascontiguousarray(a))
    return np.asarray(im.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0))


def _fit(a: np.ndarray) -> np.ndarray:
    """Scale (then pad, for extreme aspect ratios) so that every side is in [128, 1024]."""
    h, w = a.shape[:2]
    factor = 1.0
    if min(h, w) < MIN_SIDE:
        factor = MIN_SIDE / min(h, w)
    if max(h, w) * factor > MAX_SIDE:
        factor = MAX_SIDE / max(h, w)
    if factor != 1.0:
        a = _resize(a, factor)
    a = a[:MAX_SIDE, :MAX_SIDE]  # rounding may overshoot by a pixel
    h, w = a.shape[:2]
    if h < MIN_SIDE or w < MIN_SIDE:
        pad = [(0, max(0, MIN_SIDE - h)), (0, max(0, MIN_SIDE - w))] + [(0, 0)] * (a.ndim - 2)
        a = np.pad(a, pad, mode="edge")
    return np.ascontiguousarray(a, dtype=np.uint8)


# --------------------------------------------------------------------------- documents

_FONT_DIR_NAMES = {
    "dejavu": {
        "sans": ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf"),
        "serif": ("DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf"),
        "mono": ("DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf"),
    },
    "stix_cm": {
        "stix": ("STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf"),
        "cm_serif": ("cmr10.ttf", "cmb10.ttf", "cmti10.ttf"),
        "cm_sans": ("cmss10.ttf", "cmb10.ttf", "cmss10.ttf"),
        "cm_mono": ("cmtt10.ttf", "cmtt10.ttf", "cmtt10.ttf"),
    },
}
_FONT_FAMILIES: dict[str, dict[str, tuple[str, str, str]]] = _FONT_DIR_NAMES  # regular, bold, it


@functools.lru_cache(maxsize=1)
def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@functools.lru_cache(maxsize=512)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = _font_dir() / name
    try:
        return ImageFont.truetype(str(path), size)
    except OSError:
        _LOG.info("font %s not found: using Pillow's default font", path)
        return ImageFont.load_default(size)


_SIZES = (7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 20, 22, 24, 27, 30, 34, 38, 44, 50)


def _snap(size: float) -> int:
    """The nearest of a few font sizes (keeps the glyph cache small)."""
    return min(_SIZES, key=lambda s: abs(s - size))


@functools.lru_cache(maxsize=16384)
def _word_mask(name: str, size: int, word: str) -> tuple[Image.Image | None, float]:
    """The coverage mask of ``word`` (drawn at its origin, top-left anchor) and its advance."""
    font = _font(name, size)
    advance = float(font.getlength(word))
    right, bottom = font.getbbox(word)[2:]
    if right <= 0 or bottom <= 0:
        return None, advance
    mask = Image.new("L", (int(right) + 1, int(bottom) + 1), 0)
    ImageDraw.Draw(mask).text((0, 0), word, font=font, fill=255)
    return mask, advance


@functools.lru_cache(maxsize=512)
def _char_width(name: str, size: int) -> float:
    probe = "The quick brown fox 0123 jumps over the lazy dog, "
    return float(_font(name, size).getlength(probe)) / len(probe)


_WORD_TEXT = (
    "the of and to in is for with on as by at from this that patient report result normal "
    "findings impression history clinical exam study contrast scan left right upper lower "
    "anterior posterior lateral medial mild moderate severe no evidence of acute chronic "
    "stable follow up recommended within limits noted seen measuring approximately cm mm "
    "liver kidney spleen lung heart vessel lesion nodule mass cyst fluid tissue bone joint "
    "date time signed reviewed physician department hospital clinic laboratory sample value "
    "range reference unit total count level test method comment please return form complete "
    "all fields sign below office use only insurance number address phone email account "
    "invoice amount due payment balance item quantity price description summary discharge "
    "medication dose daily twice tablet oral plan goals week month year note additional "
    "information consent procedure risk benefit alternative question answer yes none other"
)
_WORDS = tuple(_WORD_TEXT.split())
_TITLES = (
    "RADIOLOGY REPORT",
    "Laboratory Results",
    "DISCHARGE SUMMARY",
    "Patient Registration",
    "Consent Form",
    "Invoice",
    "Referral Letter",
    "Quality Assurance Checklist",
    "Pathology Report",
    "Medication List",
    "Appointment Confirmation",
    "Incident Report",
    "Worksheet",
    "Questionnaire",
    "Clinical Notes",
    "Shift Handover",
    "Equipment Log",
)
_WORD_SET = frozenset(_WORDS + tuple(" ".join(_TITLES).lower().split()))
_SYLLABLES = ("ka", "lo", "mi", "ren", "to", "sa", "vel", "dor", "an", "ise", "mar", "tu", "ber")


def _word(rng: np.random.Generator) -> str:
    r = rng.random()
    if r < 0.06:
        return str(int(rng.integers(0, 1000)))
    if r < 0.08:
        return f"{rng.uniform(0, 100):.1f}"
    w = _WORDS[int(rng.integers(len(_WORDS)))]
    if rng.random() < 0.08:
        w = w.capitalize()
    if rng.random() < 0.07:
        w += "," if rng.random() < 0.6 else "."
    return w


def _words(rng: np.random.Generator, k: int) -> str:
    return " ".join(_word(rng) for _ in range(k))


def _name(rng: np.random.Generator) -> str:
    parts = [
        "".join(_SYLLABLES[int(i)] for i in rng.integers(len(_SYLLABLES), size=int(n))).title()
        for n in rng.integers(2, 4, size=2)
    ]
    return " ".join(parts)


def _value(rng: np.random.Generator) -> str:
    kind = int(rng.integers(5))
    if kind == 0:
        y, m, d = rng.integers(1950, 2026), rng.integers(1, 13), rng.integers(1, 29)
        return f"{y}-{m:02d}-{d:02d}"
    if kind == 1:
        return str(int(rng.integers(10**5, 10**8)))
    if kind == 2:
        return _name(rng)
    if kind == 3:
        return f"{rng.uniform(0, 500):.{int(rng.integers(0, 3))}f}"
    return _words(rng, int(rng.integers(1, 4))).upper()


@dataclass
class _Page:
    """A PIL canvas with its colours and the three fonts (regular, bold, italic)."""

    im: Image.Image
    draw: ImageDraw.ImageDraw
    fonts: tuple[str, str, str]
    bg: tuple[int, int, int]
    fg: tuple[int, int, int]
    accent: tuple[int, int, int]
    dark: bool

    @property
    def w(self) -> int:
        return self.im.width

    @property
    def h(self) -> int:
        return self.im.height

    def font(self, size: int, style: int = 0) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        return _font(self.fonts[style], _snap(size))

    def text(self, x: float, y: float, s: str, size: int, style: int = 0, fill: Any = None) -> None:
        """Draw ``s`` word by word from cached glyph masks (several times faster than
        rendering each line, as the words repeat)."""
        name, size = self.fonts[style], _snap(size)
        colour = self.fg if fill is None else fill
        space = _word_mask(name, size, " ")[1]
        for word in s.split(" "):
            # vocabulary words whole; numbers, names and codes glyph by glyph, so that the
            # cache stays small and warm
            pieces = [word] if word.strip(",.:").lower() in _WORD_SET else list(word)
            for piece in pieces:
                mask, advance = _word_mask(name, size, piece)
                if mask is not None:
                    self.im.paste(colour, (round(x), round(y)), mask)
                x += advance
            x += space

    def chars(self, width: float, size: int, style: int = 0) -> int:
        return max(4, int(width / _char_width(self.fonts[style], _snap(size)) * 0.95))

    def paragraph(
        self, rng: np.random.Generator, x: float, y: float, width: float, size: int, lines: int
    ) -> float:
        n = self.chars(width, size)
        step = size * rng.uniform(1.2, 1.55)
        for k in range(lines):
            target = n if k < lines - 1 else int(n * rng.uniform(0.3, 0.9))
            words: list[str] = []
            length = 0
            while True:
                wd = _word(rng)
                if length + len(wd) + 1 > target:
                    break
                words.append(wd)
                length += len(wd) + 1
            if y + step > self.h:
                break
            self.text(x, y, " ".join(words), size)
            y += step
        return y

    def mix(self, t: float) -> tuple[int, int, int]:
        """A colour between the background (t=0) and the foreground (t=1)."""
        return tuple(int(b + (f - b) * t) for b, f in zip(self.bg, self.fg, strict=True))  # type: ignore[return-value]


def _new_page(
    rng: np.random.Generator, fonts: tuple[str, str, str], w: int, h: int, dark_p: float = 0.15
) -> _Page:
    dark = bool(rng.random() < dark_p)
    if dark:
        bg = tuple(int(v) for v in rng.integers(10, 60, size=3))
        fg = tuple(int(v) for v in rng.integers(200, 256, size=3))
    else:
        base = int(rng.integers(225, 256))
        tint = rng.integers(-12, 6, size=3) if rng.random() < 0.3 else np.zeros(3, int)
        bg = tuple(int(np.clip(base + t, 0, 255)) for t in tint)
        fg = tuple(int(v) for v in rng.integers(0, 60, size=3))
    accent = tuple(int(v) for v in rng.integers(20, 220, size=3))
    im = Image.new("RGB", (w, h), bg)
    return _Page(im, ImageDraw.Draw(im), fonts, bg, fg, accent, dark)  # type: ignore[arg-type]


def _logo(p: _Page, rng: np.random.Generator, x: float, y: float, s: float) -> None:
    d, c = p.draw, p.accent
    kind = int(rng.integers(5))
    if kind == 0:  # cross in a circle
        d.ellipse((x, y, x + s, y + s), fill=c)
        t = s * 0.18
        d.rectangle((x + s / 2 - t, y + s * 0.2, x + s / 2 + t, y + s * 0.8), fill=p.bg)
        d.rectangle((x + s * 0.2, y + s / 2 - t, x + s * 0.8, y + s / 2 + t), fill=p.bg)
    elif kind == 1:  # initials in a rounded square
        d.rounded_rectangle((x, y, x + s, y + s), radius=s * 0.2, fill=c)
        letters = "".join(chr(65 + int(i)) for i in rng.integers(26, size=int(rng.integers(1, 4))))
        size = int(s / (len(letters) * 0.7 + 0.6))
        p.text(x + s * 0.12, y + s * 0.2, letters, size, 1, fill=p.bg)
    elif kind == 2:  # rings
        for k in range(3):
            m = s * 0.17 * k
            d.ellipse((x + m, y + m, x + s - m, y + s - m), outline=c, width=max(2, int(s * 0.07)))
    elif kind == 3:  # diamond with a dot
        d.polygon([(x + s / 2, y), (x + s, y + s / 2), (x + s / 2, y + s), (x, y + s / 2)], fill=c)
        d.ellipse((x + s * 0.38, y + s * 0.38, x + s * 0.62, y + s * 0.62), fill=p.bg)
    else:  # leaves
        d.ellipse((x, y + s * 0.25, x + s * 0.6, y + s * 0.75), fill=c)
        d.ellipse((x + s * 0.4, y, x + s, y + s * 0.6), fill=p.mix(0.5))


def _grid(
    p: _Page,
    rng: np.random.Generator,
    x: float,
    y: float,
    width: float,
    rows: int,
    cols: int,
    size: int,
    fill_cells: float,
) -> float:
    """A ruled table with a shaded header row; returns the y below it."""
    rh = size * rng.uniform(1.6, 2.2)
    cw = width / cols
    line = p.mix(rng.uniform(0.4, 0.9))
    shade = p.mix(0.12) if rng.random() < 0.6 else p.bg
    p.draw.rectangle((x, y, x + width, y + rh), fill=shade)
    header = [_words(rng, 1).title() for _ in range(cols)]
    for r in range(rows + 1):
        yy = y + r * rh
        if yy + rh > p.h:
            break
        for c in range(cols):
            cell = header[c] if r == 0 else (_value(rng) if rng.random() < fill_cells else "")
            cell = cell[: p.chars(cw - 6, size)]
            p.text(x + c * cw + 4, yy + rh * 0.18, cell, size, 1 if r == 0 else 0)
        p.draw.line((x, yy, x + width, yy), fill=line, width=1)
    bottom = min(y + (rows + 1) * rh, p.h - 1)
    p.draw.line((x, bottom, x + width, bottom), fill=line, width=1)
    if rng.random() < 0.7:
        for c in range(cols + 1):
            p.draw.line((x + c * cw, y, x + c * cw, bottom), fill=line, width=1)
    return bottom + size


def _checkbox(p: _Page, rng: np.random.Generator, x: float, y: float, s: float) -> None:
    p.draw.rectangle((x, y, x + s, y + s), outline=p.fg, width=max(1, int(s / 10)))
    r = rng.random()
    if r < 0.25:  # ticked
        p.draw.line((x + s * 0.15, y + s * 0.55, x + s * 0.4, y + s * 0.85), fill=p.fg, width=2)
        p.draw.line((x + s * 0.4, y + s * 0.85, x + s * 0.9, y + s * 0.1), fill=p.fg, width=2)
    elif r < 0.4:  # crossed
        p.draw.line((x + 2, y + 2, x + s - 2, y + s - 2), fill=p.fg, width=2)
        p.draw.line((x + 2, y + s - 2, x + s - 2, y + 2), fill=p.fg, width=2)


def _page_size(rng: np.random.Generator) -> tuple[int, int]:
    w = int(rng.integers(520, 800))
    if rng.random() < 0.15:  # landscape
        return min(MAX_SIDE, int(w * rng.uniform(1.25, 1.45))), w
    return w, min(MAX_SIDE, int(w * rng.uniform(1.25, 1.45)))


def _report_page(rng: np.random.Generator, fonts: tuple[str, str, str]) -> np.ndarray:
    p = _new_page(rng, fonts, *_page_size(rng))
    m = p.w * rng.uniform(0.05, 0.1)
    size = int(p.w / rng.uniform(42, 60))
    y = m
    s = p.w * rng.uniform(0.06, 0.11)
    logo_left = rng.random() < 0.6
    _logo(p, rng, m if logo_left else p.w - m - s, y, s)
    tx = m + s * 1.3 if logo_left else m
    p.text(tx, y, _words(rng, int(rng.integers(2, 4))).title(), int(size * 1.6), 1)
    p.text(tx, y + size * 2.2, f"{_words(rng, 3).title()} {int(rng.integers(1, 300))}", size, 2)
    y += s + size
    p.draw.line((m, y, p.w - m, y), fill=p.accent, width=int(rng.integers(1, 4)))
    y += size
    title = _TITLES[int(rng.integers(len(_TITLES)))]
    p.text(m, y, title, int(size * rng.uniform(1.3, 2.0)), 1)
    y += size * 3
    boxed = rng.random() < 0.4
    col_w = (p.w - 2 * m) / 2
    rows = int(rng.integers(2, 5))
    for r in range(rows):
        for c in range(2):
            x0 = m + c * col_w
            label = _words(rng, 1).title() + ":"
            p.text(x0 + 4, y, label, size, 1)
            p.text(x0 + 4 + size * 6, y, _value(rng)[: p.chars(col_w - size * 7, size)], size)
            if boxed:
                p.draw.rectangle((x0, y - 3, x0 + col_w, y + size * 1.6), outline=p.mix(0.5))
        y += size * 1.9 if not boxed else size * 1.6 + 3
        if r == rows - 1:
            y += size
    while y < p.h - m - size * 6:
        if rng.random() < 0.25 and y < p.h - m - size * 10:
            y = _grid(
                p,
                rng,
                m,
                y,
                p.w - 2 * m,
                int(rng.integers(3, 8)),
                int(rng.integers(3, 6)),
                size,
                0.85,
            )
        else:
            p.text(m, y, _words(rng, int(rng.integers(1, 3))).upper() + ":", size, 1)
            y += size * 1.6
            y = p.paragraph(rng, m, y, p.w - 2 * m, size, int(rng.integers(2, 7))) + size * 0.8
    yy = p.h - m - size * 3
    p.draw.line((m, yy, m + p.w * 0.3, yy), fill=p.fg, width=1)
    p.text(m, yy + 4, f"{_name(rng)}, {_words(rng, 1)}", size, 2)
    p.text(p.w - m - size * 6, p.h - m, f"Page {int(rng.integers(1, 4))}", int(size * 0.8))
    return _finish(p, rng)


def _worksheet(rng: np.random.Generator, fonts: tuple[str, str, str]) -> np.ndarray:
    p = _new_page(rng, fonts, *_page_size(rng), dark_p=0.08)
    m = p.w * rng.uniform(0.05, 0.09)
    size = int(p.w / rng.uniform(40, 55))
    y = m
    if rng.random() < 0.5:
        _logo(p, rng, p.w - m - size * 3, y, size * 3)
    p.text(m, y, _TITLES[int(rng.integers(len(_TITLES)))], int(size * 1.7), 1)
    y += size * 3
    y = p.paragraph(rng, m, y, p.w - 2 * m, size, int(rng.integers(1, 4))) + size
    q = 1
    while y < p.h - m - size * 3:
        kind = int(rng.integers(5))
        if kind == 0:  # fill-in lines, one or two per row
            per = int(rng.integers(1, 3))
            cw = (p.w - 2 * m) / per
            for c in range(per):
                label = f"{_words(rng, 1).title()}:"
                x0 = m + c * cw
                p.text(x0, y, label, size)
                lx = x0 + _char_width(p.fonts[0], size) * (len(label) + 1)
                p.draw.line((lx, y + size * 1.1, x0 + cw - size, y + size * 1.1), fill=p.fg)
            y += size * 2.2
        elif kind == 1:  # checkbox question
            p.text(m, y, f"{q}. {_words(rng, int(rng.integers(3, 9))).capitalize()}?", size)
            q += 1
            y += size * 1.7
            x = m + size
            for _ in range(int(rng.integers(2, 6))):
                opt = _words(rng, int(rng.integers(1, 3)))
                ow = size * 1.6 + _char_width(p.fonts[0], size) * len(opt) + size
                if x + ow > p.w - m:
                    x, y = m + size, y + size * 1.7
                _checkbox(p, rng, x, y, size)
                p.text(x + size * 1.5, y - size * 0.1, opt, size)
                x += ow
            y += size * 2.2
        elif kind == 2 and y < p.h - m - size * 10:  # table to fill
            y = _grid(
                p,
                rng,
                m,
                y,
                p.w - 2 * m,
                int(rng.integers(2, 6)),
                int(rng.integers(3, 6)),
                size,
                rng.uniform(0.0, 0.5),
            )
        elif kind == 3 and y < p.h - m - size * 8:  # comment box
            bh = size * rng.uniform(4, 8)
            p.draw.rectangle((m, y, p.w - m, y + bh), outline=p.fg, width=int(rng.integers(1, 3)))
            p.text(m + 4, y + 4, _words(rng, 2).title(), int(size * 0.9), 2)
            y += bh + size
        else:  # rating scale
            p.text(m, y, f"{q}. {_words(rng, int(rng.integers(3, 7))).capitalize()}", size)
            q += 1
            x = m + p.w * 0.55
            pick = int(rng.integers(5))
            for k in range(5):
                cx = x + k * size * 2.2
                box = (cx, y, cx + size * 1.2, y + size * 1.2)
                p.draw.ellipse(box, outline=p.fg, fill=p.fg if k == pick else None)
            y += size * 2.2
    return _finish(p, rng)


def _text_page(rng: np.random.Generator, fonts: tuple[str, str, str]) -> np.ndarray:
    p = _new_page(rng, fonts, *_page_size(rng), dark_p=0.2)
    m = p.w * rng.uniform(0.06, 0.12)
    size = int(p.w / rng.uniform(45, 70))
    y = m
    p.text(m, y, _words(rng, int(rng.integers(3, 7))).title(), int(size * rng.uniform(1.6, 2.4)), 1)
    y += size * 3.5
    if rng.random() < 0.5:
        p.text(m, y, f"{_name(rng)}, {_name(rng)}", size, 2)
        y += size * 2.5
    cols = 1 if rng.random() < 0.5 else 2
    gap = size * 2
    cw = (p.w - 2 * m - gap * (cols - 1)) / cols
    top = y
    for c in range(cols):
        x, y = m + c * (cw + gap), top
        while y < p.h - m - size * 3:
            r = rng.random()
            if r < 0.15:
                p.text(x, y, f"{int(rng.integers(1, 9))}. {_words(rng, 2).title()}", size, 1)
                y += size * 1.8
            elif r < 0.22 and y < p.h - m - cw * 0.6:  # a figure placeholder with a caption
                fh = cw * rng.uniform(0.35, 0.6)
                p.draw.rectangle((x, y, x + cw, y + fh), fill=p.mix(rng.uniform(0.1, 0.4)))
                p.draw.line((x, y + fh, x + cw, y), fill=p.mix(0.6), width=2)
                y += fh + size * 0.5
                p.text(x, y, f"Figure {int(rng.integers(1, 9))}. {_words(rng, 4)}", size, 2)
                y += size * 2
            else:
                y = p.paragraph(rng, x, y, cw, size, int(rng.integers(3, 10))) + size * 0.6
    p.text(p.w / 2, p.h - m * 0.6, str(int(rng.integers(1, 400))), size)
    return _finish(p, rng)


def _ui_form(rng: np.random.Generator, fonts: tuple[str, str, str]) -> np.ndarray:
    w = int(rng.integers(560, MAX_SIDE + 1))
    h = int(np.clip(w * rng.uniform(0.55, 0.85), 300, MAX_SIDE))
    p = _new_page(rng, fonts, w, h, dark_p=0.35)
    d = p.draw
    size = int(rng.integers(11, 17))
    bar = int(size * rng.uniform(1.8, 2.4))
    d.rectangle((0, 0, w, bar), fill=p.accent if rng.random() < 0.5 else p.mix(0.15))
    p.text(size, bar * 0.22, _words(rng, 3).title(), size, 1)
    for k in range(3):
        cx = w - (k + 1) * bar
        d.ellipse((cx + bar * 0.3, bar * 0.3, cx + bar * 0.7, bar * 0.7), fill=p.mix(0.5))
    y: float = bar
    d.rectangle((0, y, w, y + bar * 0.9), fill=p.mix(0.06))
    x: float = size
    for _ in range(int(rng.integers(3, 7))):
        word = _words(rng, 1).title()
        p.text(x, y + bar * 0.15, word, size)
        x += _char_width(p.fonts[0], size) * (len(word) + 3)
    y += bar * 0.9
    left = 0.0
    if rng.random() < 0.6:  # sidebar with one highlighted row
        left = w * rng.uniform(0.16, 0.26)
        d.rectangle((0, y, left, h), fill=p.mix(0.1))
        sel = int(rng.integers(8))
        for k in range(int(rng.integers(5, 14))):
            yy = y + size + k * size * 2
            if k == sel:
                d.rectangle((0, yy - size * 0.4, left, yy + size * 1.4), fill=p.accent)
            p.text(size, yy, _words(rng, int(rng.integers(1, 3))).title(), size)
    x0, x1 = left + size * 2, w - size * 2
    yy = y + size * 1.5
    p.text(x0, yy, _TITLES[int(rng.integers(len(_TITLES)))], int(size * 1.5), 1)
    yy += size * 3
    if rng.random() < 0.4:  # tabs
        tx = x0
        for k in range(int(rng.integers(2, 5))):
            label = _words(rng, 1).title()
            tw = _char_width(p.fonts[0], size) * len(label) + size * 2
            fill = p.accent if k == 0 else p.mix(0.1)
            d.rounded_rectangle((tx, yy, tx + tw, yy + size * 2), radius=4, fill=fill)
            p.text(tx + size, yy + size * 0.4, label, size)
            tx += tw + 4
        yy += size * 3
    field_w = (x1 - x0) * rng.uniform(0.45, 0.7)
    label_w = (x1 - x0) * 0.25
    while yy < h - size * 7:
        kind = rng.random()
        p.text(x0, yy + size * 0.3, _words(rng, int(rng.integers(1, 3))).title(), size)
        fx = x0 + label_w
        if kind < 0.55:  # text input or dropdown
            d.rounded_rectangle(
                (fx, yy, fx + field_w, yy + size * 1.9),
                radius=3,
                outline=p.mix(0.45),
                fill=p.mix(0.03),
            )
            if rng.random() < 0.7:
                val = _value(rng)[: p.chars(field_w - size * 3, size)]
                p.text(fx + 6, yy + size * 0.3, val, size, fill=p.mix(0.8))
            if rng.random() < 0.3:
                tx = fx + field_w - size * 1.6
                d.polygon(
                    [
                        (tx, yy + size * 0.7),
                        (tx + size, yy + size * 0.7),
                        (tx + size / 2, yy + size * 1.3),
                    ],
                    fill=p.fg,
                )
        elif kind < 0.8:  # checkboxes or radio buttons
            x = fx
            for _ in range(int(rng.integers(2, 5))):
                label = _words(rng, 1)
                if rng.random() < 0.5:
                    _checkbox(p, rng, x, yy + size * 0.3, size)
                else:
                    d.ellipse((x, yy + size * 0.3, x + size, yy + size * 1.3), outline=p.fg)
                p.text(x + size * 1.5, yy + size * 0.2, label, size)
                x += size * 3 + _char_width(p.fonts[0], size) * len(label)
        else:  # striped list
            rows = int(rng.integers(2, 6))
            for r in range(rows):
                ry = yy + r * size * 1.8
                if r % 2:
                    d.rectangle((fx, ry, x1, ry + size * 1.8), fill=p.mix(0.07))
                p.text(fx + 4, ry + size * 0.3, _words(rng, 4)[: p.chars(x1 - fx, size)], size)
            yy += (rows - 1) * size * 1.8
        yy += size * 2.6
    bx: float = x1
    for k in range(int(rng.integers(1, 4))):
        label = _words(rng, 1).title()
        bw = _char_width(p.fonts[0], size) * len(label) + size * 3
        bx -= bw + size
        button = p.accent if k == 0 else None
        d.rounded_rectangle(
            (bx, h - size * 4.5, bx + bw, h - size * 2.3),
            radius=int(size * 0.4),
            fill=button,
            outline=p.mix(0.5),
        )
        p.text(bx + size * 1.5, h - size * 4.1, label, size)
    d.rectangle((0, h - size * 1.6, w, h), fill=p.mix(0.08))
    p.text(size, h - size * 1.5, _words(rng, 4), int(size * 0.85))
    return np.asarray(p.im)


def _finish(p: _Page, rng: np.random.Generator) -> np.ndarray:
    """Sometimes the look of a scanned or photocopied sheet: slight rotation, blur,
    uneven illumination, grain, a dark scanner-bed border; sometimes greyscale."""
    im = p.im
    if rng.random() < 0.45:  # scanned or photocopied, mostly in greyscale
        if rng.random() < 0.7:
            im = im.convert("L")
        bed: Any = int(rng.integers(0, 90)) if rng.random() < 0.4 else p.bg
        if im.mode == "L":
            bed = bed if isinstance(bed, int) else int(np.mean(bed))
        elif isinstance(bed, int):
            bed = (bed, bed, bed)
        # nearest-neighbour rotation, then the scanner's softness hides its jagged edges
        im = im.rotate(rng.uniform(-3.0, 3.0), resample=Image.Resampling.NEAREST, fillcolor=bed)
        im = im.filter(ImageFilter.BoxBlur(float(rng.uniform(0.4, 1.0))))
        a = np.asarray(im).astype(np.float32)
        h, w = a.shape[:2]
        gy = np.linspace(rng.uniform(0.82, 1.0), rng.uniform(0.9, 1.05), h, dtype=np.float32)
        gx = np.linspace(rng.uniform(0.88, 1.0), rng.uniform(0.92, 1.04), w, dtype=np.float32)
        light = gy[:, None] * gx[None, :]
        grain = rng.standard_normal((h, w), dtype=np.float32) * np.float32(rng.uniform(2.0, 9.0))
        if a.ndim == 3:
            light, grain = light[..., None], grain[..., None]
        out = np.clip(a * light + grain, 0, 255).astype(np.uint8)
    else:
        out = np.asarray(im)
        if rng.random() < 0.2:
            out = _grey(out)
    return out


_DOC_GENERATORS: dict[str, Callable[[np.random.Generator, tuple[str, str, str]], np.ndarray]] = {
    "report_page": _report_page,
    "worksheet": _worksheet,
    "text_page": _text_page,
    "ui_form": _ui_form,
}

# --------------------------------------------------------------------------- charts

_CHART_STYLES = {
    "std": (
        "default",
        "classic",
        "ggplot",
        "bmh",
        "grayscale",
        "dark_background",
        "seaborn-v0_8-whitegrid",
        "seaborn-v0_8-darkgrid",
    ),
    "alt_style": ("Solarize_Light2", "fivethirtyeight"),
}
_CHART_KINDS = ("line", "bar", "scatter", "pie", "hist", "heatmap", "table")
_STAT_KINDS = ("box", "violin", "errorbar", "area")
_TITLE_Y = 1.02  # a fixed title height skips matplotlib's costly automatic placement
_CMAPS = (
    "viridis",
    "magma",
    "plasma",
    "cividis",
    "inferno",
    "coolwarm",
    "RdYlGn",
    "Blues",
    "Greys",
    "gray",
    "YlOrRd",
    "Spectral",
    "turbo",
    "bone",
)


def _colours(rng: np.random.Generator, k: int) -> list[Any] | None:
    """Series colours: the style's cycle (None), random RGB, or samples of a colour map."""
    r = rng.random()
    if r < 0.35:
        return None
    if r < 0.65:
        return [tuple(float(v) for v in c) for c in rng.uniform(0, 1, size=(k, 3))]
    import matplotlib

    cmap = matplotlib.colormaps[_CMAPS[int(rng.integers(len(_CMAPS)))]]
    return [cmap(float(t)) for t in np.linspace(0.1, 0.9, k)]


def _labels(ax: Any, rng: np.random.Generator) -> None:
    if rng.random() < 0.8:
        ax.set_title(_words(rng, int(rng.integers(1, 5))).title(), y=_TITLE_Y)
    if rng.random() < 0.6:
        ax.set_xlabel(_words(rng, int(rng.integers(1, 3))))
    if rng.random() < 0.6:
        ax.set_ylabel(_words(rng, int(rng.integers(1, 3))))


def _panel(
    ax: Any, kind: str, rng: np.random.Generator, nbins: int = 6, sparse: bool = False
) -> None:
    """Draw one chart of ``kind`` with random data on ``ax`` (about ``nbins`` ticks;
    ``sparse``: no y ticks, as dashboards often draw them, and much cheaper)."""
    k = int(rng.integers(1, 5))
    cols = _colours(rng, max(k, 8))
    _draw_panel(ax, kind, rng, k, cols)
    if kind not in ("pie", "table"):
        ax.locator_params(nbins=nbins)
        if sparse:
            from matplotlib.ticker import NullLocator

            ax.yaxis.set_major_locator(NullLocator())
            ax.spines[["left", "right", "top"]].set_visible(False)


def _draw_panel(ax: Any, kind: str, rng: np.random.Generator, k: int, cols: Any) -> None:
    if kind == "line":
        n = int(rng.integers(8, 150))
        x = np.arange(n)
        for j in range(k):
            y = np.cumsum(rng.normal(rng.uniform(-0.2, 0.3), 1.0, n)) + rng.uniform(0, 20)
            ax.plot(
                x,
                y,
                color=None if cols is None else cols[j],
                lw=rng.uniform(0.8, 2.5),
                marker="o" if n < 30 and rng.random() < 0.5 else None,
                label=_words(rng, 1),
            )
        if rng.random() < 0.5:
            ax.legend(fontsize="small")
        ax.grid(rng.random() < 0.5)
        _labels(ax, rng)
    elif kind == "bar":
        m = int(rng.integers(3, 11))
        k = min(k, 3)
        names = [_words(rng, 1)[:8] for _ in range(m)]
        x = np.arange(m)
        bottom = np.zeros(m)
        stacked = rng.random() < 0.4
        horiz = rng.random() < 0.3
        width = 0.8 / (1 if stacked else k)
        for j in range(k):
            v = rng.uniform(1, 10, m)
            pos = x if stacked else x + (j - (k - 1) / 2) * width
            colour = None if cols is None else cols[j]
            if horiz:
                ax.barh(pos, v, height=width, left=bottom, color=colour)
            else:
                ax.bar(pos, v, width=width, bottom=bottom, color=colour)
            if stacked:
                bottom = bottom + v
        (ax.set_yticks if horiz else ax.set_xticks)(x, names, fontsize="small")
        _labels(ax, rng)
    elif kind == "scatter":
        for j in range(k):
            n = int(rng.integers(20, 300))
            c = rng.normal(0, 3, 2)
            pts = rng.normal(c, rng.uniform(0.5, 2.0), (n, 2))
            if rng.random() < 0.3:
                ax.scatter(
                    pts[:, 0],
                    pts[:, 1],
                    c=pts[:, 1],
                    s=rng.uniform(4, 40),
                    cmap=_CMAPS[int(rng.integers(len(_CMAPS)))],
                )
            else:
                ax.scatter(
                    pts[:, 0],
                    pts[:, 1],
                    s=rng.uniform(4, 40),
                    alpha=rng.uniform(0.4, 1),
                    color=None if cols is None else cols[j],
                )
        _labels(ax, rng)
    elif kind == "pie":
        m = int(rng.integers(3, 9))
        ax.pie(
            rng.uniform(1, 10, m),
            labels=[_words(rng, 1)[:10] for _ in range(m)],
            colors=None if cols is None else cols[:m],
            autopct="%1.0f%%" if rng.random() < 0.5 else None,
            wedgeprops={"width": rng.uniform(0.3, 0.6)} if rng.random() < 0.4 else None,
            textprops={"fontsize": "small"},
        )
        if rng.random() < 0.6:
            ax.set_title(_words(rng, 3).title(), y=_TITLE_Y)
    elif kind == "hist":
        histtype = ("bar", "stepfilled", "step")[int(rng.integers(3))]
        for j in range(1 if histtype == "bar" else min(k, 3)):
            v = rng.normal(rng.uniform(-2, 2), rng.uniform(0.5, 2), int(rng.integers(100, 3000)))
            ax.hist(
                v,
                bins=int(rng.integers(8, 25 if histtype == "bar" else 60)),
                alpha=rng.uniform(0.5, 1.0),
                histtype=histtype,
                color=None if cols is None else cols[j],
            )
        _labels(ax, rng)
    elif kind == "heatmap":
        hh, ww = int(rng.integers(4, 30)), int(rng.integers(4, 30))
        data = rng.normal(0, 1, (hh, ww)).cumsum(axis=int(rng.integers(2)))
        im = ax.imshow(data, cmap=_CMAPS[int(rng.integers(len(_CMAPS)))], aspect="auto")
        if hh * ww <= 64 and rng.random() < 0.6:
            for (i, j), v in np.ndenumerate(data):
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=7)
        if rng.random() < 0.6:
            ax.figure.colorbar(im, ax=ax)
        _labels(ax, rng)
    elif kind == "table":
        rows, ncol = int(rng.integers(3, 9)), int(rng.integers(2, 6))
        cells = [[_value(rng)[:12] for _ in range(ncol)] for _ in range(rows)]
        ax.axis("off")
        header_colour = cols[0] if cols is not None else None
        table = ax.table(
            cellText=cells,
            colLabels=[_words(rng, 1).title() for _ in range(ncol)],
            loc="center",
            colColours=[header_colour] * ncol if header_colour else None,
        )
        table.auto_set_font_size(False)
        table.set_fontsize(float(rng.uniform(6, 10)))
        table.scale(1, float(rng.uniform(1.0, 1.6)))
        if rng.random() < 0.7:
            ax.set_title(_words(rng, 3).title(), y=_TITLE_Y)
    elif kind in ("box", "violin"):
        groups = [rng.normal(rng.uniform(-2, 2), rng.uniform(0.3, 2), 80) for _ in range(k + 2)]
        if kind == "box":
            patch, horizontal = rng.random() < 0.5, rng.random() < 0.3
            # ``orientation`` since matplotlib 3.10 (``vert`` is deprecated from 3.11)
            new_api = "orientation" in inspect.signature(ax.boxplot).parameters
            turn = {"orientation": "horizontal"} if new_api else {"vert": False}
            ax.boxplot(groups, patch_artist=patch, **(turn if horizontal else {}))
        else:
            ax.violinplot(groups, showmeans=rng.random() < 0.5)
        _labels(ax, rng)
    elif kind == "errorbar":
        x = np.arange(int(rng.integers(4, 15)))
        for j in range(k):
            ax.errorbar(
                x + j * 0.1,
                rng.uniform(2, 10, len(x)),
                yerr=rng.uniform(0.2, 2, len(x)),
                fmt="o-" if rng.random() < 0.5 else "s",
                capsize=3,
                color=None if cols is None else cols[j],
            )
        _labels(ax, rng)
    elif kind == "area":
        x = np.arange(int(rng.integers(10, 80)))
        ys = np.abs(rng.normal(1, 0.5, (k + 1, len(x)))).cumsum(axis=1)
        ax.stackplot(x, ys, colors=None if cols is None else cols[: k + 1], alpha=0.85)
        _labels(ax, rng)
    else:
        raise ValueError(f"unknown chart kind {kind!r}")


def _rectangle(
    xy: tuple[float, float], w: float, h: float, colour: Any, transform: Any, alpha: float
) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle(xy, w, h, facecolor=colour, transform=transform, alpha=alpha, zorder=-1)


def _kpi_band(ax: Any, rng: np.random.Generator, n: int) -> None:
    """A dashboard's row of ``n`` KPI tiles (big number, label, maybe a sparkline), drawn in
    one axes: a tile per axes would cost a matplotlib axes each."""
    ax.axis("off")
    cols = _colours(rng, n)
    for i in range(n):
        x0, w = i / n + 0.01, 1 / n - 0.02
        if rng.random() < 0.6:
            colour = cols[i] if cols is not None else (0.5, 0.5, 0.5)
            alpha = float(rng.uniform(0.15, 1))
            ax.add_patch(_rectangle((x0, 0.02), w, 0.96, colour, ax.transAxes, alpha))
        value = f"{rng.uniform(0, 10 ** int(rng.integers(1, 5))):,.{int(rng.integers(0, 2))}f}"
        unit = ("", "%", " k", " ms")[int(rng.integers(4))]
        size = float(rng.uniform(14, 24))
        ax.text(x0 + 0.03 * w, 0.5, value + unit, fontsize=size, transform=ax.transAxes,
                weight="bold")  # fmt: skip
        label = _words(rng, 2).title()
        ax.text(x0 + 0.03 * w, 0.15, label, fontsize=size / 2.2, transform=ax.transAxes)
        if rng.random() < 0.5:
            y = np.cumsum(rng.normal(0, 1, 30))
            y = (y - y.min()) / (np.ptp(y) + 1e-9)
            xs = np.linspace(x0 + 0.6 * w, x0 + 0.95 * w, 30)
            ax.plot(xs, 0.15 + 0.3 * y, transform=ax.transAxes, lw=1.2)


def _chart_image(rng: np.random.Generator, style: str, generator: str) -> np.ndarray:
    """A chart (one panel) or a dashboard (2 to 4 charts, maybe under a band of KPI tiles),
    drawn with matplotlib Agg."""
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    kinds: tuple[str, ...] = _STAT_KINDS if generator == "stat_chart" else _CHART_KINDS
    nbins = int(rng.integers(4, 8))
    header = 0
    if generator == "dashboard":
        nr, nc = [(1, 2), (1, 2), (1, 3), (2, 2), (2, 1), (2, 1)][int(rng.integers(6))]
        header = int(rng.random() < 0.6)
        kinds = tuple(kd for kd in _CHART_KINDS if kd != "table")
        nbins = int(rng.integers(3, 6))
        fw = rng.uniform(2.6, 3.6) * nc
        fh = rng.uniform(2.0, 2.8) * nr + header * rng.uniform(0.8, 1.2)
        dpi = float(rng.uniform(60, 85))
    else:
        nr = nc = 1
        fw, fh = rng.uniform(3.5, 8.0), rng.uniform(2.6, 6.0)
        dpi = float(rng.uniform(60, 110))
    scale = min(1.0, MAX_SIDE / (max(fw, fh) * dpi))
    with matplotlib.style.context(style):
        fig = Figure(figsize=(fw, fh), dpi=dpi * scale)
        canvas = FigureCanvasAgg(fig)
        grid = fig.add_gridspec(nr + header, nc, height_ratios=[0.45] * header + [1.0] * nr)
        if header:
            _kpi_band(fig.add_subplot(grid[0, :]), rng, nc + int(rng.integers(0, 3)))
        for r in range(nr):
            for c in range(nc):
                kind = kinds[int(rng.integers(len(kinds)))]
                # dashboards of 3 or 4 charts: no y ticks (ticks are matplotlib's main cost)
                sparse = generator == "dashboard" and (nr * nc > 2 or rng.random() < 0.5)
                _panel(fig.add_subplot(grid[header + r, c]), kind, rng, nbins, sparse)
        if generator == "dashboard" and rng.random() < 0.7:
            fig.suptitle(_words(rng, int(rng.integers(2, 5))).title(), fontsize="large")
        fig.subplots_adjust(
            left=float(rng.uniform(0.08, 0.15)),
            right=float(rng.uniform(0.9, 0.97)),
            bottom=float(rng.uniform(0.1, 0.18)),
            top=float(rng.uniform(0.82, 0.9)),
            wspace=0.35,
            hspace=0.45,
        )
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()

"""The bundled files: scikit-image, matplotlib and pydicom images (never an ultrasound one)."""

from __future__ import annotations

import functools
import gzip
import importlib
import importlib.util
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

_LOG = logging.getLogger("model.nonultrasound")


#: SOP classes of ultrasound images (US, US multi-frame, and their retired forms)
_US_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.6.1",
        "1.2.840.10008.5.1.4.1.1.6",
        "1.2.840.10008.5.1.4.1.1.3.1",
        "1.2.840.10008.5.1.4.1.1.3",
    }
)


class _UltrasoundFileError(ValueError):
    """A DICOM file listed as a source is ultrasound: a bug in the source table."""


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

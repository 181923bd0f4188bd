"""One image of a source: a bundled file windowed or tiled, or a synthetic generator run."""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np

from model.nonultrasound.charts import _CHART_STYLES, _chart_image
from model.nonultrasound.files import _load, _loads, _Slice
from model.nonultrasound.forms import _ui_form
from model.nonultrasound.pages import _report_page, _text_page, _worksheet
from model.nonultrasound.table import SEED_RANGES, _Source
from model.nonultrasound.text import _FONT_FAMILIES


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
        fonts_name, dark = _DOC_VARIANTS[variant]
        family = _FONT_FAMILIES[fonts_name]
        styles = list(family)
        fonts = family[styles[int(rng.integers(len(styles)))]]
        if dark:  # a dark-mode page: light text on a dark background
            return _DOC_GENERATORS[generator](rng, fonts, 1.0)
        return _DOC_GENERATORS[generator](rng, fonts)
    if generator in ("chart", "stat_chart", "dashboard"):
        styles_ = _CHART_STYLES[variant]
        return _chart_image(rng, styles_[int(rng.integers(len(styles_)))], generator)
    raise ValueError(f"unknown generator {generator!r}")


#: document variant -> (font family, every page dark)
_DOC_VARIANTS: dict[str, tuple[str, bool]] = {
    "dejavu": ("dejavu", False),
    "stix_cm": ("stix_cm", False),
    "dejavu_dark": ("dejavu", True),
}


_DOC_GENERATORS: dict[str, Callable[..., np.ndarray]] = {
    "report_page": _report_page,
    "worksheet": _worksheet,
    "text_page": _text_page,
    "ui_form": _ui_form,
}

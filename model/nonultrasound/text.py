"""Fonts and made-up text for the synthetic documents: words, titles, names and field values."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_LOG = logging.getLogger("model.nonultrasound")


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

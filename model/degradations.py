"""Degradations that make pseudo-labelled training and test images, in two protocols.

Every degradation acts on a uint8 grey image at the preset resolution (256 x 256 for BUSI),
i.e. after any resampling, so the artifacts reach the network unchanged (see preprocess.py).

``paper`` (reproduction of the published method): three classes with fixed labels,
    original = 100, JPEG = 60, Gaussian blur = 30. The severity is drawn from a documented
    range instead of one value: JPEG quality uniform in [10, 40], blur sigma uniform in
    [1.5, 3.0] pixels.

``graded`` (default, the shipped model): the label falls continuously with severity.
    JPEG quality q, drawn uniform in [5, 100]:
        label = 100                                   for q >= 90 (visually lossless)
        label = 20 + 80 * ((q - 5) / 85) ** 0.6       for 5 <= q < 90
    Gaussian blur sigma s (pixels at 256 x 256), drawn uniform in [0, 4]:
        label = 100                                   for s <= 0.4 (kernel ~ identity)
        label = 100 - 80 * ((s - 0.4) / 3.6) ** 0.75 for 0.4 < s <= 4
    Why: both curves are strictly decreasing below their lossless threshold, continuous, and
    span 100 (indistinguishable from the original) to 20 (useless). The exponents < 1 make
    the first visible losses cost little and the label drop faster as the image falls apart
    (JPEG quality 50 -> 75, 30 -> 58, 10 -> 35; blur sigma 1 -> 79, 2 -> 56, 3 -> 37), which
    puts the good/average/poor thresholds (80 / 45) at JPEG quality ~58 / ~17 and blur sigma
    ~1.0 / ~2.6. Severities outside the ranges are clamped (label 20 at most severe).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

__all__ = [
    "PROTOCOLS",
    "Degraded",
    "Protocol",
    "blur",
    "get_protocol",
    "graded_blur_label",
    "graded_jpeg_label",
    "jpeg",
]

KINDS = ("original", "jpeg", "blur")


def jpeg(image: np.ndarray, quality: float) -> np.ndarray:
    """JPEG round trip of a uint8 grey image at ``quality`` (1..100, rounded)."""
    q = round(min(max(float(quality), 1.0), 100.0))
    buf = io.BytesIO()
    Image.fromarray(image, mode="L").save(buf, format="JPEG", quality=q)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("L")).copy()


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a uint8 grey image, ``sigma`` in pixels (0 = unchanged)."""
    if sigma <= 0:
        return image.copy()
    out = gaussian_filter(
        image.astype(np.float32), sigma=float(sigma), mode="reflect", truncate=4.0
    )
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def graded_jpeg_label(quality: float) -> float:
    """Graded label of a JPEG at ``quality`` (see the module docstring)."""
    if quality >= 90:
        return 100.0
    t = (max(quality, 5.0) - 5.0) / 85.0
    return float(20.0 + 80.0 * t**0.6)


def graded_blur_label(sigma: float) -> float:
    """Graded label of a Gaussian blur of ``sigma`` pixels (see the module docstring)."""
    if sigma <= 0.4:
        return 100.0
    t = (min(sigma, 4.0) - 0.4) / 3.6
    return float(100.0 - 80.0 * t**0.75)


@dataclass(frozen=True)
class Degraded:
    """One pseudo-labelled version of a source image."""

    image: np.ndarray
    kind: str  # original | jpeg | blur
    severity: float  # JPEG quality, blur sigma, or 0 for the original
    label: float


@dataclass(frozen=True)
class Protocol:
    """A label protocol: severity ranges and the label of each (kind, severity)."""

    name: str
    jpeg_quality: tuple[float, float]
    blur_sigma: tuple[float, float]

    def label(self, kind: str, severity: float) -> float:
        """The pseudo-label of a version of kind ``kind`` at ``severity``."""
        if kind == "original":
            return 100.0
        if self.name == "paper":
            return 60.0 if kind == "jpeg" else 30.0
        if kind == "jpeg":
            return graded_jpeg_label(severity)
        return graded_blur_label(severity)

    def apply(self, image: np.ndarray, kind: str, severity: float) -> Degraded:
        """Degrade ``image`` as ``kind`` at ``severity`` and label it."""
        if kind == "original":
            out = image
        elif kind == "jpeg":
            out = jpeg(image, severity)
        elif kind == "blur":
            out = blur(image, severity)
        else:
            raise ValueError(f"unknown degradation {kind!r}; expected one of {KINDS}")
        return Degraded(out, kind, float(severity), self.label(kind, severity))

    def draw(self, kind: str, rng: np.random.Generator, stratum: tuple[int, int] = (0, 1)) -> float:
        """A severity for ``kind``: uniform over its range, or over stratum ``i`` of ``n``."""
        if kind == "original":
            return 0.0
        lo, hi = self.jpeg_quality if kind == "jpeg" else self.blur_sigma
        i, n = stratum
        width = (hi - lo) / n
        return float(rng.uniform(lo + i * width, lo + (i + 1) * width))

    def sample(self, image: np.ndarray, kind: str, rng: np.random.Generator) -> Degraded:
        """A random version of ``kind`` with its severity drawn from the protocol's range."""
        return self.apply(image, kind, self.draw(kind, rng))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description (kept in checkpoints)."""
        return {
            "name": self.name,
            "jpeg_quality": list(self.jpeg_quality),
            "blur_sigma": list(self.blur_sigma),
            "labels": (
                "original 100, jpeg 60, blur 30"
                if self.name == "paper"
                else "original 100; jpeg q>=90: 100, else 20+80*((q-5)/85)^0.6; "
                "blur s<=0.4: 100, else 100-80*((s-0.4)/3.6)^0.75"
            ),
        }


PROTOCOLS: dict[str, Protocol] = {
    "paper": Protocol("paper", jpeg_quality=(10.0, 40.0), blur_sigma=(1.5, 3.0)),
    "graded": Protocol("graded", jpeg_quality=(5.0, 100.0), blur_sigma=(0.0, 4.0)),
}


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name`` (``paper`` or ``graded``)."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; expected paper or graded") from None

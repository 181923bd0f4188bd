"""Degradations that make pseudo-labelled images: each defect of the vocabulary
(:mod:`model.defects`) with a continuous severity and a graded label.

Every degradation acts on a uint8 grey image at the preset resolution (256 x 256 for BUSI),
after any resampling, so its artifacts reach the network unchanged (see preprocess.py).

**Display model.** A scanner shows ``G = 255 clip((20 log10(A) + DR) / DR, 0, 1)``, ``A`` the
echo envelope (1 = the top of the display), ``DR`` the displayed dynamic range. An exported
image is taken back to the envelope with an assumed ``DR0`` (60 dB unless the caller draws
one; training draws it uniform in 50-65 dB, the range of common presets): ``L = DR0 G / 255 -
DR0`` dB, ``A = 10^(L / 20)``; black pixels (``G = 0``) have no known echo and start at
``A = 0``. The defects below act on ``A`` (or ``L``) and the image is compressed again with
clipping, so saturation and the black floor lose information as they do on a scanner. Where a
defect lifts what lies below the display (more gain, a wider dynamic range) a synthetic
electronic noise floor is added first, 3 dB below ``-DR0``: complex Gaussian noise smoothed by
a point-spread-sized kernel, whose magnitude is Rayleigh-distributed like speckle.

**Labels.** Each defect has a severity ``s`` and a curve (:class:`Curve`): ``label = 100`` while
``s <= t`` (the largest change judged invisible), then ``100 - 80 ((s - t) / (s_max - t))^gamma``,
strictly falling to 20 (useless) at ``s_max`` and clamped there. ``damage = (100 - label) / 80``.
With the default grade thresholds (good >= 80, average >= 45) a defect is good while its damage
is at most 0.25 and poor above 0.6875; the grade boundaries of each curve are in the model card.

Per defect (``t``, ``s_max``, ``gamma`` of its curve; the model card gives the reasons):

- ``low_gain``: ``L - s``, s = gain drop in dB (2, 30, 1): 9 dB dims the tissue visibly,
  past 21 dB most tissue is black.
- ``high_gain``: floor, then ``L + s`` (2, 30, 1): from 9 dB the noise floor shows; past
  21 dB bright tissue saturates.
- ``low_contrast``: floor, then shown with ``DR0 + s`` (5, 60, 1): good up to about 19 dB
  more range, poor past 43 dB, a flat grey.
- ``noise``: ``|A + a n|`` with ``a`` at ``s`` dB above ``-DR0``, rising with depth by up to
  8 dB as time-gain compensation amplifies it (3, 26, 1): typical tissue lies about 20 dB
  above the floor, so grain fills the cysts from 9 dB and buries the tissue past 19 dB.
- ``depth_attenuation``: ``L - S ramp(depth)`` beyond a start depth, s = the mean loss over
  the field of view in dB (1.5, 22, 1): good to 6.6 dB (13 dB lost at the bottom), poor past
  15.6 dB (the far half black).
- ``shadowing``: ``L - S`` (S 20-40 dB) in bands along scan lines: 1-2 acoustic shadows
  below a depth, 2-3 rib shadows, or a contact-loss wedge at one edge whose tissue is
  replaced by ring-down; s = share of the field of view shadowed (0.05, 0.75, 1): natural
  posterior shadows cover a few per cent; good up to 22 %, poor past 53 %.
- ``no_signal``: the tissue echo attenuated by ``60 s`` dB and a ring-down at ``s`` times its
  level, with the receiver's grain over it in half the versions (a probe in air with the
  gain up); at ``s = 1`` (a blank frame) also plain black or faint grain alone, that grain
  averaged over 1-16 frames (a scanner's persistence) or added after compression (a black
  screen's video noise, Rayleigh with scale 1-8 grey levels), and averaged over 1-3 capture
  pixels per scored pixel (a larger screen capture resized): a dim haze.
  s = coupling lost (0.05, 1, 0.7): a probe half in air is already average; 1 is no echo at
  all, label 20.
- ``blur``: Gaussian, motion (a line kernel along or across the scan lines) or lateral
  (focus) blur, s = the equivalent Gaussian sigma in px (0.4, 4, 0.75, the graded curve).
- ``compression``: a JPEG round trip at quality q (the graded JPEG curve: 100 for q >= 90).
- ``dead_elements``: ``L - D`` (D 10-20 dB) along 1-3 element wide lines over the full depth,
  s = dead elements (width x D / 20 dB) of a 128-element aperture (0.3, 10, 0.8): two
  adjacent dead elements already change the beam (good until 2), poor past 6.4.

The equivalent sigma of a motion blur of length ``l`` along one axis is ``l / sqrt(24)``, of a
lateral Gaussian ``sigma_x / sqrt(2)`` (same total variance as an isotropic Gaussian).

**Two defects at once** combine by their damages: ``label = 100 - 80 (1 - prod(1 - damage_d))``,
so a pair is always worse than either alone and one defect gives its own label.

Effects along scan lines and depth use the scan geometry (:mod:`model.geometry`): vertical
lines for a linear array, lines radiating from the apex for curved and sector arrays.
Outside the field of view the image stays black.

Randomness: the layout of a defect (where its shadows are, which elements fail, the
variant) comes from ``layout``, a generator the caller seeds; it is drawn before the severity
is used, so the same seed at growing severities gives a nested ladder (the same shadows,
wider; the same dead lines, more of them).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.ndimage import convolve1d, gaussian_filter, gaussian_filter1d

from model.defects import DEFECTS
from model.envelope import DEFAULT_DYNAMIC_RANGE, ENVELOPE_DEFECTS, ENVELOPE_OPS, Envelope, to_uint8
from model.geometry import Geometry, linear

__all__ = [
    "CURVES",
    "ENVELOPE_DEFECTS",
    "Curve",
    "Envelope",
    "apply_defects",
    "blur",
    "blur_variant",
    "combined_label",
    "defect_label",
    "graded_blur_label",
    "graded_jpeg_label",
    "jpeg",
]


# --- label curves -----------------------------------------------------------------------


@dataclass(frozen=True)
class Curve:
    """``label = 100`` up to ``invisible``, then falling as ``((s - t) / (s_max - t))^gamma``
    to 20 at ``useless`` (see the module docstring)."""

    invisible: float
    useless: float
    gamma: float

    def damage(self, severity: float) -> float:
        """0 (invisible) .. 1 (useless)."""
        if severity <= self.invisible:
            return 0.0
        t = min(1.0, (severity - self.invisible) / (self.useless - self.invisible))
        return float(t**self.gamma)

    def label(self, severity: float) -> float:
        return 100.0 - 80.0 * self.damage(severity)

    def severity_at(self, damage: float) -> float:
        """The severity whose damage is ``damage`` (0 < damage <= 1)."""
        return self.invisible + (self.useless - self.invisible) * damage ** (1.0 / self.gamma)


CURVES: dict[str, Curve] = {
    "low_gain": Curve(2.0, 30.0, 1.0),
    "high_gain": Curve(2.0, 30.0, 1.0),
    "low_contrast": Curve(5.0, 60.0, 1.0),
    "noise": Curve(3.0, 26.0, 1.0),
    "depth_attenuation": Curve(1.5, 22.0, 1.0),
    "shadowing": Curve(0.05, 0.75, 1.0),
    "no_signal": Curve(0.05, 1.0, 0.7),
    "blur": Curve(0.4, 4.0, 0.75),
    "dead_elements": Curve(0.3, 10.0, 0.8),
}


def graded_jpeg_label(quality: float) -> float:
    """Label of a JPEG at ``quality``: 100 for q >= 90, else 20 + 80 ((q - 5) / 85)^0.6."""
    if quality >= 90:
        return 100.0
    t = (max(quality, 5.0) - 5.0) / 85.0
    return float(20.0 + 80.0 * t**0.6)


def graded_blur_label(sigma: float) -> float:
    """Label of a Gaussian blur of ``sigma`` px: 100 for s <= 0.4, else
    100 - 80 ((s - 0.4) / 3.6)^0.75."""
    return CURVES["blur"].label(sigma)


def defect_label(name: str, severity: float) -> float:
    """The label of one defect at ``severity`` (compression: severity = JPEG quality)."""
    if name == "compression":
        return graded_jpeg_label(severity)
    try:
        return CURVES[name].label(severity)
    except KeyError:
        raise ValueError(f"unknown defect {name!r}; expected one of {DEFECTS}") from None


def combined_label(labels: Sequence[float]) -> float:
    """Labels of defects applied together: ``100 - 80 (1 - prod(1 - damage))``."""
    keep = 1.0
    for label in labels:
        keep *= 1.0 - min(1.0, max(0.0, (100.0 - label) / 80.0))
    return 100.0 - 80.0 * (1.0 - keep)


# --- plain display-domain degradations ---------------------------------------------------


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
    return to_uint8(out)


def _line_kernel(length: float) -> np.ndarray:
    """A 1-D box of ``length`` pixels (fractional ends), normalised."""
    if length <= 1.0:
        return np.array([1.0], dtype=np.float32)
    half = length / 2.0
    n = math.ceil(half - 0.5)
    taps = np.ones(2 * n + 1, dtype=np.float32)
    taps[0] = taps[-1] = half - (n - 0.5)
    return taps / taps.sum()


def blur_variant(image: np.ndarray, sigma_eq: float, variant: str, axis: int = 1) -> np.ndarray:
    """A blur of equivalent Gaussian sigma ``sigma_eq``: ``gaussian``, ``motion`` (a line
    kernel along ``axis``: 1 = across the scan lines, 0 = along them) or ``lateral``."""
    if sigma_eq <= 0:
        return image.copy()
    if variant == "gaussian":
        return blur(image, sigma_eq)
    grey = image.astype(np.float32)
    if variant == "motion":
        out = convolve1d(grey, _line_kernel(sigma_eq * math.sqrt(24.0)), axis=axis, mode="reflect")
    elif variant == "lateral":
        out = gaussian_filter1d(grey, sigma_eq * math.sqrt(2.0), axis=1, mode="reflect")
    else:
        raise ValueError(f"unknown blur variant {variant!r}")
    return to_uint8(out)


# --- every defect together (the envelope defects live in model/envelope.py) --------------

DISPLAY_DEFECTS = ("blur", "compression")


def apply_defects(
    image: np.ndarray,
    defects: Sequence[tuple[str, float]],
    layout_seed: int | Sequence[int],
    geometry: Geometry | None = None,
    dynamic_range: float = DEFAULT_DYNAMIC_RANGE,
    noise_seed: int | Sequence[int] | None = None,
    blur_kind: str | None = None,
) -> np.ndarray:
    """``image`` (uint8 grey, black outside ``geometry``'s field of view) with each
    ``(defect, severity)`` applied; envelope defects in :data:`ENVELOPE_DEFECTS` order, then
    blur, then compression. ``layout_seed`` fixes where things are (the same seed along a
    ladder), ``noise_seed`` the noise realisation (default: the layout seed); ``blur_kind``
    forces the blur variant (``gaussian``, ``motion``, ``lateral``; default drawn)."""
    g = geometry or linear(*image.shape)
    names = [n for n, _ in defects]
    unknown = [n for n in names if n not in DEFECTS]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"defects {names}: expected distinct names from {DEFECTS}")
    wanted = dict(defects)
    out = image
    envelope_names = [n for n in ENVELOPE_DEFECTS if n in wanted]
    if envelope_names:
        env = Envelope.from_image(
            image,
            g,
            np.random.default_rng(noise_seed if noise_seed is not None else layout_seed),
            dynamic_range,
        )
        for name in envelope_names:
            layout = np.random.default_rng([*_seq(layout_seed), DEFECTS.index(name)])
            ENVELOPE_OPS[name](env, float(wanted[name]), layout)
        out = env.image()
    if "blur" in wanted:
        layout = np.random.default_rng([*_seq(layout_seed), DEFECTS.index("blur")])
        variant = str(layout.choice(["gaussian", "motion", "lateral"], p=[0.6, 0.25, 0.15]))
        axis = int(layout.integers(0, 2))
        variant = blur_kind or variant
        out = blur_variant(out, float(wanted["blur"]), variant, axis)
        out[~g.mask] = 0
    if "compression" in wanted:
        out = jpeg(out, float(wanted["compression"]))
    return out


def _seq(seed: int | Sequence[int]) -> list[int]:
    return [int(seed)] if isinstance(seed, int | np.integer) else [int(s) for s in seed]

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
  level; at ``s = 1`` (a blank frame) also plain black or faint noise. s = coupling lost
  (0.05, 1, 0.7): a probe half in air is already average; 1 is no echo at all, label 20.
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

DEFAULT_DYNAMIC_RANGE = 60.0
FLOOR_BELOW_DB = 3.0
ELEMENTS = 128  # aperture of the dead-element severity scale


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
    return _uint8(out)


def _uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


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
    return _uint8(out)


# --- the envelope domain ---------------------------------------------------------------


def _speckle(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Complex Gaussian noise smoothed by a point-spread-sized kernel, unit RMS."""
    re = rng.standard_normal(shape, dtype=np.float32)
    im = rng.standard_normal(shape, dtype=np.float32)
    re = gaussian_filter(re, sigma=(0.6, 1.1))
    im = gaussian_filter(im, sigma=(0.6, 1.1))
    rms = float(np.sqrt(np.mean(re * re + im * im))) or 1.0
    return (re + 1j * im).astype(np.complex64) / rms


@dataclass
class Envelope:
    """An image taken back to the echo envelope, and the display settings to show it."""

    amplitude: np.ndarray  # float32, 1 = top of the display
    dynamic_range: float  # the export's DR0, dB
    geometry: Geometry
    rng: np.random.Generator  # for noise (not for layouts)
    display_range: float = 0.0  # DR used to show it again (0: DR0)
    floor_added: bool = False

    @classmethod
    def from_image(
        cls,
        image: np.ndarray,
        geometry: Geometry,
        rng: np.random.Generator,
        dynamic_range: float = DEFAULT_DYNAMIC_RANGE,
    ) -> Envelope:
        g = image.astype(np.float32)
        level = dynamic_range * g / 255.0 - dynamic_range
        amplitude = np.where(g > 0, np.power(10.0, level / 20.0), 0.0).astype(np.float32)
        return cls(amplitude, dynamic_range, geometry, rng)

    def db_to_amplitude(self, level_db: float | np.ndarray) -> np.ndarray:
        return np.power(10.0, np.asarray(level_db, dtype=np.float32) / 20.0)

    def attenuate(self, drop_db: np.ndarray | float) -> None:
        self.amplitude *= self.db_to_amplitude(-np.asarray(drop_db, dtype=np.float32))

    def add_noise(self, level_db: np.ndarray | float) -> None:
        """``|A + a n|`` with RMS noise amplitude ``a`` at ``level_db`` (re the display top)."""
        a = self.db_to_amplitude(level_db)
        noise = _speckle(self.amplitude.shape, self.rng)
        self.amplitude = np.abs(self.amplitude + a * noise).astype(np.float32)

    def add_floor(self) -> None:
        """The electronic noise floor, 3 dB below what the export displays (once)."""
        if not self.floor_added:
            self.add_noise(-self.dynamic_range - FLOOR_BELOW_DB)
            self.floor_added = True

    def image(self) -> np.ndarray:
        """Compress and clip to a uint8 display image; black outside the field of view."""
        dr = self.display_range or self.dynamic_range
        with np.errstate(divide="ignore"):
            level = 20.0 * np.log10(self.amplitude)
        out = _uint8(255.0 * np.clip((level + dr) / dr, 0.0, 1.0))
        out[~self.geometry.mask] = 0
        return out


def _ringdown(env: Envelope, layout: np.random.Generator, level_db: float) -> np.ndarray:
    """Reverberation of a probe face in air: echoes at multiples of a few pixels of depth,
    each ``decay`` dB weaker, over a decaying haze, with the column-to-column variation of
    the elements and a speckle-like texture."""
    spacing = float(layout.uniform(4.0, 14.0))
    decay = float(layout.uniform(2.0, 8.0))
    width = spacing * float(layout.uniform(0.12, 0.45))
    haze = float(layout.uniform(6.0, 20.0))  # the glow between echoes, dB under them
    columns = float(layout.uniform(0.5, 3.0))  # element-to-element variation, dB
    g = env.geometry
    z = g.v * g.depth_px
    out = np.zeros_like(env.amplitude)
    k = 0
    while level_db - k * decay >= -env.dynamic_range - 6.0 and k <= 60:
        amp = 10.0 ** ((level_db - k * decay) / 20.0)
        centre = (k + 0.5) * spacing
        out += amp * np.exp(-((z - centre) ** 2) / (2.0 * width * width)).astype(np.float32)
        k += 1
    glow = np.power(10.0, (level_db - haze - decay * np.maximum(z, 0.0) / spacing) / 20.0)
    out += np.where(z >= 0, glow, 0.0).astype(np.float32)
    lateral = gaussian_filter1d(layout.standard_normal(512).astype(np.float32), 2.0)
    lateral *= columns / (float(lateral.std()) or 1.0)
    u_index = np.clip((g.u * 511).astype(np.int32), 0, 511)
    texture = np.abs(_speckle(out.shape, env.rng)) * 0.5 + 0.5
    gain = np.power(10.0, lateral[u_index] / 20.0)
    return (out * texture * gain).astype(np.float32)


def _smooth_step(x: np.ndarray, edge: float, softness: float) -> np.ndarray:
    """0 below ``edge``, 1 above, a smooth ramp of width ``softness``."""
    return np.clip((x - edge) / max(softness, 1e-6) + 0.5, 0.0, 1.0).astype(np.float32)


def _band(u: np.ndarray, lo: float, hi: float, softness: float) -> np.ndarray:
    """1 inside ``[lo, hi]`` along the aperture, smooth edges."""
    return _smooth_step(u, lo, softness) * (1.0 - _smooth_step(u, hi, softness))


def _coverage(mask_values: np.ndarray, fov: np.ndarray) -> float:
    """Share of the field of view where a mask reaches 0.5 (on a strided grid)."""
    inside = fov[::4, ::4]
    if not inside.any():
        return 0.0
    return float(np.mean(mask_values[::4, ::4][inside] >= 0.5))


# --- the defects in the envelope domain ----------------------------------------------------


def _low_gain(env: Envelope, severity: float, layout: np.random.Generator) -> None:
    env.attenuate(severity)


def _high_gain(env: Envelope, severity: float, layout: np.random.Generator) -> None:
    env.add_floor()
    env.attenuate(-severity)


def _low_contrast(env: Envelope, severity: float, layout: np.random.Generator) -> None:
    env.add_floor()
    env.display_range = env.dynamic_range + severity


def _noise(env: Envelope, severity: float, layout: np.random.Generator) -> None:
    slope = float(layout.uniform(0.0, 8.0))  # TGC amplifies the noise with depth
    depth = np.clip(env.geometry.v, 0.0, 1.0)
    if severity <= 0:
        return
    env.add_noise(-env.dynamic_range + severity + slope * (depth - 0.5))


def _depth_attenuation(env: Envelope, severity: float, layout: np.random.Generator) -> None:
    start = float(layout.uniform(0.0, 0.3))
    power = float(layout.uniform(0.7, 1.3))
    g = env.geometry
    ramp = np.clip((g.v - start) / (1.0 - start), 0.0, 1.0) ** power
    mean = float(ramp[g.mask].mean()) if g.mask.any() else 1.0
    env.attenuate(ramp * (severity / max(mean, 1e-3)))


@dataclass(frozen=True)
class _ShadowLayout:
    variant: str  # acoustic | rib | contact
    centres: tuple[float, ...]
    weights: tuple[float, ...]
    starts: tuple[float, ...]
    drops: tuple[float, ...]
    softness: float
    side: int  # contact loss: 0 left, 1 right


def _shadow_layout(layout: np.random.Generator) -> _ShadowLayout:
    variant = str(layout.choice(["acoustic", "rib", "contact"], p=[0.45, 0.25, 0.30]))
    softness = float(layout.uniform(0.01, 0.04))
    side = int(layout.integers(0, 2))
    if variant == "acoustic":
        n = int(layout.integers(1, 3))
        centres = tuple(float(c) for c in np.sort(layout.uniform(0.15, 0.85, n)))
        weights = tuple(float(w) for w in layout.uniform(0.5, 1.0, n))
        starts = tuple(float(s) for s in layout.uniform(0.05, 0.45, n))
    elif variant == "rib":
        n = int(layout.integers(2, 4))
        first = float(layout.uniform(0.0, 1.0 / n))
        centres = tuple(first + (i + 0.5) / n * (1.0 - first) for i in range(n))
        weights = (1.0,) * n
        starts = (float(layout.uniform(0.0, 0.15)),) * n
    else:
        centres, weights, starts = (0.0,), (1.0,), (0.0,)
    drops = tuple(float(d) for d in layout.uniform(20.0, 40.0, len(centres)))
    return _ShadowLayout(variant, centres, weights, starts, drops, softness, side)


def _shadow_mask(g: Geometry, lay: _ShadowLayout, scale: float, depth_factor: float) -> np.ndarray:
    """The shadow mask (0..1) of a layout with band widths times ``scale`` and start depths
    times ``depth_factor``."""
    onset = 0.03
    if lay.variant == "contact":
        width = min(0.98, scale)
        edge = g.u if lay.side == 0 else 1.0 - g.u
        return (1.0 - _smooth_step(edge, width, lay.softness)).astype(np.float32)
    total = sum(lay.weights)
    mask = np.zeros(g.mask.shape, dtype=np.float32)
    for centre, weight, start in zip(lay.centres, lay.weights, lay.starts, strict=True):
        half = 0.5 * scale * weight / total
        band = _band(g.u, centre - half, centre + half, lay.softness)
        mask = np.maximum(mask, band * _smooth_step(g.v, start * depth_factor, onset))
    return mask


def _solve(coverage_of: object, target: float, hi: float) -> float:
    """The smallest x in [0, hi] whose coverage reaches ``target`` (bisection)."""
    assert callable(coverage_of)
    lo = 0.0
    if coverage_of(hi) < target:
        return hi
    for _ in range(18):
        mid = 0.5 * (lo + hi)
        if coverage_of(mid) >= target:
            hi = mid
        else:
            lo = mid
    return hi


def _shadowing(env: Envelope, severity: float, layout: np.random.Generator) -> None:
    lay = _shadow_layout(layout)
    ring_level = float(layout.uniform(-25.0, -10.0))
    ring_layout = np.random.default_rng(layout.integers(0, 2**32))
    if severity <= 0:
        return
    g = env.geometry
    widest = 0.98 if lay.variant == "contact" else 0.95
    scale = _solve(lambda k: _coverage(_shadow_mask(g, lay, k, 1.0), g.mask), severity, widest)
    depth_factor = 1.0
    if _coverage(_shadow_mask(g, lay, scale, 1.0), g.mask) < severity:
        # wide enough already: start the shadows shallower to reach the share
        depth_factor = 1.0 - _solve(
            lambda f: _coverage(_shadow_mask(g, lay, scale, 1.0 - f), g.mask), severity, 1.0
        )
    mask = _shadow_mask(g, lay, scale, depth_factor)
    if lay.variant == "contact":
        ring = _ringdown(env, ring_layout, ring_level)
        env.amplitude = (env.amplitude * (1.0 - mask) + ring * mask).astype(np.float32)
        return
    env.attenuate(float(np.mean(lay.drops)) * mask)


def _no_signal(env: Envelope, severity: float, layout: np.random.Generator) -> None:
    variant = str(layout.choice(["air", "black", "noise"], p=[0.6, 0.15, 0.25]))
    ring_level = float(layout.uniform(-22.0, -4.0))
    noise_level = float(layout.uniform(0.0, 12.0))
    ring_layout = np.random.default_rng(layout.integers(0, 2**32))
    s = min(1.0, max(0.0, severity))
    if s <= 0:
        return
    if s < 1.0:  # a probe partly in air always rings; a blank frame may be silent
        variant = "air"
    env.attenuate(60.0 * s)
    if variant == "air":
        ring = _ringdown(env, ring_layout, ring_level + 20.0 * math.log10(s))
        env.amplitude = (env.amplitude + ring).astype(np.float32)
    elif variant == "noise":
        env.add_noise(-env.dynamic_range + noise_level + 20.0 * math.log10(s))


def _dead_elements(env: Envelope, severity: float, layout: np.random.Generator) -> None:
    elements = int(layout.choice([96, 128, 192]))
    candidates = 14
    centres = layout.uniform(0.04, 0.96, candidates)
    widths = layout.integers(1, 4, candidates)  # in elements of the probe
    drops = layout.uniform(10.0, 20.0, candidates)
    if severity <= 0:
        return
    u = env.geometry.u
    element = 1.0 / elements
    soft = 0.35 * element
    drop = np.zeros_like(env.amplitude)
    left = severity * elements / ELEMENTS  # in this probe's elements x (D / 20 dB)
    for centre, width, d in zip(centres, widths, drops, strict=True):
        if left <= 1e-6:
            break
        worth = float(width) * float(d) / 20.0
        if worth > left:
            d = 20.0 * left / float(width)
            worth = left
        left -= worth
        half = 0.5 * float(width) * element
        drop = np.maximum(drop, float(d) * _band(u, centre - half, centre + half, soft))
    env.attenuate(drop)


_ENVELOPE_OPS = {
    "no_signal": _no_signal,
    "shadowing": _shadowing,
    "dead_elements": _dead_elements,
    "depth_attenuation": _depth_attenuation,
    "noise": _noise,
    "low_gain": _low_gain,
    "high_gain": _high_gain,
    "low_contrast": _low_contrast,
}
# The order in which envelope defects are applied together: what the tissue returns first,
# then the noise the receiver adds, then the gain that amplifies both, then the display.
ENVELOPE_DEFECTS: tuple[str, ...] = tuple(_ENVELOPE_OPS)
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
            _ENVELOPE_OPS[name](env, float(wanted[name]), layout)
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

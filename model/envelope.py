"""The display model (:class:`Envelope`) and the defects that act on the echo envelope.

Each defect, its severity and its curve are described in :mod:`model.degradations`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d

from model.geometry import Geometry

__all__ = [
    "DEFAULT_DYNAMIC_RANGE",
    "ELEMENTS",
    "ENVELOPE_DEFECTS",
    "ENVELOPE_OPS",
    "FLOOR_BELOW_DB",
    "Envelope",
    "speckle",
    "to_uint8",
]

DEFAULT_DYNAMIC_RANGE = 60.0
FLOOR_BELOW_DB = 3.0
ELEMENTS = 128  # aperture of the dead-element severity scale


def to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


# --- the envelope domain ---------------------------------------------------------------


def speckle(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
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
        noise = speckle(self.amplitude.shape, self.rng)
        self.amplitude = np.abs(self.amplitude + a * noise).astype(np.float32)

    def persistent_noise(self, level_db: float, frames: int, capture: int = 1) -> None:
        """Replace the echo by noise alone, as an export shows it: the mean magnitude of
        ``frames`` independent draws (unit RMS each, at ``level_db``: a frame-averaged,
        persistence display), drawn on a ``capture`` times finer pixel grid, shown
        (compressed and clipped) there and area-averaged down to this image's grid, as
        resizing a larger screen capture for scoring averages its pixels."""
        h, w = self.amplitude.shape
        a = self.db_to_amplitude(level_db)
        mean = np.zeros((h * capture, w * capture), np.float32)
        for _ in range(frames):
            mean += np.abs(speckle(mean.shape, self.rng))
        dr = self.dynamic_range
        with np.errstate(divide="ignore"):
            shown = np.clip((20.0 * np.log10(a * mean / frames) + dr) / dr, 0.0, 1.0)
        self._show_captured(shown, capture)

    def video_noise(self, sigma_grey: float, capture: int = 1) -> None:
        """Replace the echo by noise added after the display's compression (the video or
        capture chain of a black screen): Rayleigh grey levels of scale ``sigma_grey`` on a
        ``capture`` times finer grid, area-averaged down to this image's grid."""
        h, w = self.amplitude.shape
        grey = self.rng.rayleigh(sigma_grey, (h * capture, w * capture)).astype(np.float32)
        self._show_captured(np.clip(grey / 255.0, 0.0, 1.0), capture)

    def _show_captured(self, shown: np.ndarray, capture: int) -> None:
        """Make this image the display values ``shown`` (0..1) of a ``capture`` times finer
        grid, area-averaged down to this grid and taken back to the envelope."""
        h, w = self.amplitude.shape
        shown = shown.reshape(h, capture, w, capture).mean(axis=(1, 3))
        dr = self.dynamic_range
        level = self.db_to_amplitude(dr * shown - dr)
        self.amplitude = np.where(shown > 0, level, 0.0).astype(np.float32)

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
        out = to_uint8(255.0 * np.clip((level + dr) / dr, 0.0, 1.0))
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
    texture = np.abs(speckle(out.shape, env.rng)) * 0.5 + 0.5
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
    # the bands may widen past the view's width (overlapping, cut at its edges) so that
    # every layout reaches the share asked up to the top of the range: a label that keeps
    # falling while the image no longer changes would teach nothing
    widest = 0.98 if lay.variant == "contact" else 3.0
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
    variant = str(layout.choice(["air", "black", "noise"], p=[0.5, 0.1, 0.4]))
    ring_level = float(layout.uniform(-22.0, -4.0))
    noise_level = float(layout.uniform(0.0, 12.0))
    grain = bool(layout.random() < 0.5)  # receiver noise shown under the rings (gain up)
    faint_level = float(layout.uniform(-3.0, 12.0))
    frames = int(layout.choice([1, 2, 4, 8, 16]))
    capture = int(layout.choice([1, 2, 3]))  # the capture's pixels per scored pixel
    video = float(layout.uniform(1.0, 8.0)) if layout.random() < 0.5 else 0.0
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
    if variant == "air" and grain:
        # a probe in air with the gain up: low-level grain fills the frame, no tissue
        env.add_noise(-env.dynamic_range + noise_level + 20.0 * math.log10(s))
    elif variant == "noise":
        # grain alone: the receiver's, averaged by the scanner's persistence, or the video
        # chain's on a black screen; both averaged by resizing a larger capture: a dim haze
        if video:
            env.video_noise(video, capture)
        else:
            env.persistent_noise(-env.dynamic_range + faint_level, frames, capture)


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


ENVELOPE_OPS = {
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
ENVELOPE_DEFECTS: tuple[str, ...] = tuple(ENVELOPE_OPS)

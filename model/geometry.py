"""Scan geometry: where the field of view is and which scan line every pixel lies on.

Effects that follow scan lines (shadows, dead elements, contact loss) and depth (far-field
fading, reverberation) are drawn in scan-line coordinates, so they follow the probe's
geometry:

``linear``  a linear array: vertical scan lines. ``u`` = (x - x0) / width, ``v`` = (y - y0) /
            height inside the rectangle of the field of view.
``curved``  a curved (convex) array: scan lines radiate from an apex above the image; the
            probe face is an arc of radius ``r0`` about the apex, the field ends at ``r1``.
``sector``  a phased array: the same with the apex at (or just above) the top edge and
            ``r0`` close to 0, and a wider angle.

For the fans, ``u`` = (theta + half_angle) / (2 half_angle) with theta the angle from the
vertical (so ``u`` runs from the left edge of the fan to the right), and ``v`` = (r - r0) /
(r1 - r0). Outside the field of view ``mask`` is False (black on a scanner's screen).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["GEOMETRIES", "Geometry", "fan", "linear", "random_geometry"]

GEOMETRIES = ("linear", "curved", "sector")


@dataclass(frozen=True)
class Geometry:
    """A field of view on an ``(H, W)`` image and its scan-line coordinates."""

    kind: str
    mask: np.ndarray  # bool (H, W): inside the field of view
    u: np.ndarray  # float32 (H, W): lateral position along the aperture, 0..1 inside
    v: np.ndarray  # float32 (H, W): depth from the probe face, 0..1 inside
    depth_px: float  # pixels from the probe face to the deepest point, along a scan line
    apex: tuple[float, float] | None = None  # (x, y) of the fan's apex

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.mask.shape[0]), int(self.mask.shape[1]))


def linear(height: int, width: int, box: tuple[int, int, int, int] | None = None) -> Geometry:
    """A linear array filling ``box`` = (x0, y0, x1, y1), exclusive ends (default: all)."""
    x0, y0, x1, y1 = box or (0, 0, width, height)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    u = (xs + 0.5 - x0) / max(1, x1 - x0)
    v = (ys + 0.5 - y0) / max(1, y1 - y0)
    mask = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
    return Geometry("linear", mask, u.astype(np.float32), v.astype(np.float32), float(y1 - y0))


def fan(
    height: int,
    width: int,
    apex: tuple[float, float],
    half_angle: float,
    r0: float,
    r1: float,
    kind: str = "curved",
) -> Geometry:
    """A fan about ``apex`` (x, y; y may be negative: above the image), ``half_angle`` in
    radians from the vertical, between radii ``r0`` (probe face) and ``r1``."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    dx, dy = xs + 0.5 - apex[0], ys + 0.5 - apex[1]
    r = np.hypot(dx, dy)
    theta = np.arctan2(dx, dy)  # 0 straight down, positive to the right
    u = (theta + half_angle) / (2.0 * half_angle)
    v = (r - r0) / max(1e-6, r1 - r0)
    mask = (r >= r0) & (r <= r1) & (np.abs(theta) <= half_angle) & (dy > 0)
    return Geometry(
        kind, mask, u.astype(np.float32), v.astype(np.float32), float(r1 - r0), apex=apex
    )


def _curved(rng: np.random.Generator, h: int, w: int) -> Geometry:
    """A convex probe whose fan fills the box, as the crop box leaves it."""
    radius = float(rng.uniform(0.35, 1.2)) * h  # probe face radius
    depth = h * float(rng.uniform(0.96, 1.0))
    r1 = radius + depth
    # the widest point is the bottom arc's ends: fit them to the width
    half = math.asin(min(0.999, (w / 2.0) / r1)) * float(rng.uniform(0.9, 1.0))
    # the probe face touches the top edge in the middle
    return fan(h, w, (w / 2.0, -radius), half, radius, r1, kind="curved")


def _sector(rng: np.random.Generator, h: int, w: int) -> Geometry:
    """A phased-array sector: apex at the top edge, a small probe face."""
    apex_y = float(rng.uniform(-0.06, 0.01)) * h
    r0 = float(rng.uniform(0.0, 0.05)) * h - min(0.0, apex_y)
    r1 = h * float(rng.uniform(0.96, 1.0)) - apex_y
    half = min(math.radians(float(rng.uniform(30.0, 45.0))), math.asin(min(0.999, (w / 2.0) / r1)))
    return fan(h, w, (w / 2.0, apex_y), half, max(r0, 1.0), r1, kind="sector")


def _linear_random(rng: np.random.Generator, h: int, w: int) -> Geometry:
    """Mostly the whole image (BUSI-like exports); sometimes a narrower field of view with
    black margins beside it, as a screen capture cropped loosely."""
    if rng.random() < 0.7:
        return linear(h, w)
    mx = int(rng.integers(0, w // 8))
    my = int(rng.integers(0, h // 12))
    return linear(h, w, (mx, my, w - int(rng.integers(0, w // 8)), h))


def random_geometry(
    rng: np.random.Generator,
    height: int,
    width: int,
    weights: tuple[float, float, float] = (0.5, 0.25, 0.25),
    kind: str | None = None,
) -> Geometry:
    """A random field of view: ``kind`` (one of :data:`GEOMETRIES`) or drawn with
    ``weights`` (linear, curved, sector)."""
    if kind is None:
        kind = str(rng.choice(GEOMETRIES, p=np.asarray(weights) / sum(weights)))
    if kind == "linear":
        return _linear_random(rng, height, width)
    if kind == "curved":
        return _curved(rng, height, width)
    if kind == "sector":
        return _sector(rng, height, width)
    raise ValueError(f"unknown geometry {kind!r}; expected one of {GEOMETRIES}")

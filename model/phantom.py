"""Synthetic clean B-mode images of other organs, for training beside BUSI's breast images.

BUSI holds one scanner's breast images. Left alone, the model (and above all its
not-ultrasound gate) learns that ultrasound means breast texture, and abdominal, cardiac or
obstetric screens look foreign to it. :func:`phantom` draws a clean image of an invented
scene the way a scanner forms one: an echogenicity map (layers of tissue, organs with their
own texture, dark chambers and vessels, bright specular boundaries, posterior enhancement
and shadowing behind them), multiplied by fully developed speckle, log-compressed over a
60 dB dynamic range. These are source images only: the defects protocol masks them to a
field of view and degrades them exactly as it does a BUSI image, so their labels come from
the same curves. They are not used for validation or testing.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from model.envelope import DEFAULT_DYNAMIC_RANGE, speckle, to_uint8

__all__ = ["PHANTOM_SCENES", "phantom", "phantoms"]

PHANTOM_SCENES = ("abdomen", "heart", "vessel", "obstetric", "muscle")


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / float(size)
    return y, x


def _ellipse(
    y: np.ndarray, x: np.ndarray, rng: np.random.Generator, r: tuple[float, float]
) -> np.ndarray:
    """A soft-edged random ellipse (1 inside)."""
    cy, cx = rng.uniform(0.25, 0.85), rng.uniform(0.15, 0.85)
    ry, rx = rng.uniform(*r), rng.uniform(*r)
    t = rng.uniform(0, np.pi)
    dy, dx = y - cy, x - cx
    u = (dx * np.cos(t) + dy * np.sin(t)) / rx
    v = (-dx * np.sin(t) + dy * np.cos(t)) / ry
    d = np.sqrt(u * u + v * v)
    return np.clip((1.08 - d) / 0.08, 0.0, 1.0)


def _layers(y: np.ndarray, x: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """Echogenicity (dB) of ``n`` wavy horizontal layers, with bright interfaces."""
    out = np.zeros_like(y)
    edges = np.sort(rng.uniform(0.03, 0.6, n))
    for edge in edges:
        wave = edge + rng.uniform(0.005, 0.04) * np.sin(
            2 * np.pi * rng.uniform(0.5, 2.0) * x + rng.uniform(0, 6.3)
        )
        below = y > wave
        out = np.where(below, float(rng.uniform(-14.0, 2.0)), out)
        out += float(rng.uniform(4.0, 14.0)) * np.exp(-(((y - wave) / 0.006) ** 2))
    return out


def _chambers(
    y: np.ndarray, x: np.ndarray, rng: np.random.Generator, count: int, r: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Dark fluid-filled regions (dB drop) and the enhancement beneath them (dB gain)."""
    drop = np.zeros_like(y)
    enhance = np.zeros_like(y)
    for _ in range(count):
        inside = _ellipse(y, x, rng, r)
        drop = np.maximum(drop, inside * float(rng.uniform(22.0, 38.0)))
        column = gaussian_filter(inside.max(axis=0), 2.0)
        below = np.cumsum(inside, axis=0) > 0
        enhance += below * (1 - inside) * column[None, :] * float(rng.uniform(0.0, 4.0))
    return drop, enhance


def _scene_db(scene: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """The mean echo level (dB re the display top) of ``scene``, before speckle."""
    y, x = _grid(size)
    base = _layers(y, x, rng, int(rng.integers(1, 4)))
    texture = gaussian_filter(
        rng.standard_normal((size, size)).astype(np.float32), rng.uniform(3, 10)
    )
    texture *= float(rng.uniform(2.0, 6.0)) / (float(texture.std()) or 1.0)
    if scene == "abdomen":  # an organ with its own texture, vessels, a bright capsule
        organ = _ellipse(y, x, rng, (0.3, 0.6))
        base += organ * float(rng.uniform(-6.0, 4.0))
        drop, enhance = _chambers(y, x, rng, int(rng.integers(1, 5)), (0.02, 0.07))
    elif scene == "heart":  # large dark chambers, bright walls and valves
        drop, enhance = _chambers(y, x, rng, int(rng.integers(2, 5)), (0.1, 0.22))
        base += 6.0 * (gaussian_filter(drop, 3.0) > 8.0) * (drop < 8.0)
    elif scene == "vessel":  # long tubes across the image
        drop = np.zeros_like(y)
        for _ in range(int(rng.integers(1, 3))):
            centre = rng.uniform(0.25, 0.75) + rng.uniform(-0.1, 0.1) * (x - 0.5)
            half = rng.uniform(0.03, 0.09)
            tube = np.clip((half - np.abs(y - centre)) / 0.01, 0.0, 1.0)
            drop = np.maximum(drop, tube * float(rng.uniform(25.0, 38.0)))
            base += 10.0 * np.exp(-(((np.abs(y - centre) - half) / 0.006) ** 2))
        enhance = np.zeros_like(y)
    elif scene == "obstetric":  # a fluid sac holding a brighter curved structure
        drop, enhance = _chambers(y, x, rng, 1, (0.2, 0.35))
        head = _ellipse(y, x, rng, (0.06, 0.14))
        drop = drop * (1 - head)
        base += head * 4.0
    else:  # muscle: fibres along the image, fascia lines
        fibres = gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), (0.8, 12.0))
        base += fibres * (5.0 / (float(fibres.std()) or 1.0))
        drop, enhance = np.zeros_like(y), np.zeros_like(y)
    level = base + texture + enhance - drop - float(rng.uniform(18.0, 30.0))
    return level - float(rng.uniform(0.0, 20.0)) * y  # what a well-set TGC leaves of the fall


def phantom(size: int, rng: np.random.Generator, scene: str | None = None) -> np.ndarray:
    """A clean synthetic B-mode image, ``size`` x ``size`` uint8, of ``scene`` (None: random)."""
    name = scene or str(rng.choice(PHANTOM_SCENES))
    level = _scene_db(name, size, rng)
    amplitude = np.power(10.0, level / 20.0) * np.abs(speckle((size, size), rng))
    dr = DEFAULT_DYNAMIC_RANGE
    with np.errstate(divide="ignore"):
        shown = 20.0 * np.log10(np.maximum(amplitude, 1e-6))
    return to_uint8(255.0 * np.clip((shown + dr) / dr, 0.0, 1.0))


def phantoms(n: int, size: int, seed: int) -> np.ndarray:
    """``n`` phantom images, scenes in turn, reproducible from ``seed``."""
    out = np.zeros((n, size, size), dtype=np.uint8)
    for i in range(n):
        rng = np.random.default_rng([seed, 7331, i])
        out[i] = phantom(size, rng, PHANTOM_SCENES[i % len(PHANTOM_SCENES)])
    return out

"""Image operations: random augmentation, greyscale, JPEG, resizing, the final fit in size."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from model.nonultrasound.table import MAX_SIDE, MIN_SIDE


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

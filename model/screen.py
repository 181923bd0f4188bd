"""Screen furniture (text, depth scale, grey bar), colour-flow boxes and the worker's crop.

The training protocols (:mod:`model.protocols`) draw them onto their versions.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from model.geometry import Geometry

__all__ = ["colour_flow", "decorate", "dual_view", "inference_crop"]

_WORDS = (
    "LEFT BREAST",
    "RIGHT",
    "TRV",
    "SAG",
    "LIVER",
    "GB",
    "CINE",
    "Gn 60",
    "DR 60",
    "MI 0.9",
    "TIS 0.4",
    "C5-1",
    "L12-5",
    "12MHz",
    "FR 28Hz",
    "D 11cm",
    "2D",
    "P",
    "Res",
    "AO 100%",
)


def _between(rng: np.random.Generator, low: int, high: int) -> int:
    """A random integer in [low, high), or ``low`` when the range is empty."""
    return int(rng.integers(low, high)) if high > low else max(0, low)


def decorate(image: np.ndarray, geometry: Geometry, rng: np.random.Generator) -> np.ndarray:
    """Screen text, a depth scale and a grey bar where a scanner draws them: in the black
    outside the field of view (fans) or in the corners (linear), so that they are learned
    as normal."""
    out = Image.fromarray(image, mode="L")
    draw = ImageDraw.Draw(out)
    h, w = image.shape
    fan = geometry.kind != "linear"
    for _ in range(int(rng.integers(1, 5))):
        size = int(rng.integers(8, 16))
        font = ImageFont.load_default(size=size)
        text = str(rng.choice(_WORDS))
        if fan:  # the top corners are black beside a fan
            left = rng.random() < 0.5
            x = _between(rng, 0, w // 5) if left else _between(rng, w - w // 4, w - size * 2)
            y = _between(rng, 0, h // 5)
        else:
            x = _between(rng, 0, w - size * 3)
            top = rng.random() < 0.5
            y = _between(rng, 0, h // 6) if top else _between(rng, h - h // 6, h - size)
        draw.text((x, y), text, fill=int(rng.integers(150, 256)), font=font)
    if rng.random() < 0.5:  # a depth scale: ticks down one side
        x = _between(rng, w - 6, w - 1) if rng.random() < 0.5 else _between(rng, 1, 6)
        step = int(rng.integers(12, 32))
        for y in range(_between(rng, 4, 16), h, step):
            draw.line([(x - 2, y), (x + 2, y)], fill=220)
    if rng.random() < (0.5 if fan else 0.25):  # a grey or colour-map bar at one side
        x0 = 2 if rng.random() < 0.5 else w - 10
        y0 = _between(rng, h // 8 if not fan else h // 2, h - 70)
        high, low = int(rng.integers(150, 256)), int(rng.integers(0, 120))
        for i in range(64):
            draw.line([(x0, y0 + i), (x0 + 6, y0 + i)], fill=high + (low - high) * i // 63)
    return np.asarray(out)


def colour_flow(image: np.ndarray, geometry: Geometry, rng: np.random.Generator) -> np.ndarray:
    """A colour Doppler box as the grey conversion shows it: a box outline inside the field
    of view and, in it, vessel-like branches (thin bands of smooth noise) at the luma of a
    red-yellow flow map. The B-mode quality is unchanged, so the label is too: the model
    learns to look past it."""
    from scipy.ndimage import gaussian_filter

    h, w = image.shape
    bw, bh = int(rng.integers(w // 4, w * 3 // 4)), int(rng.integers(h // 5, h // 2))
    x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
    field = gaussian_filter(rng.standard_normal((bh, bw)).astype(np.float32), rng.uniform(2, 5))
    field /= float(field.std()) or 1.0
    if rng.random() < 0.6:  # vessels: where the smooth field crosses zero
        flow = np.abs(field) < float(rng.uniform(0.25, 0.7))
        flow &= gaussian_filter(rng.standard_normal((bh, bw)), 8.0) > float(
            rng.uniform(-0.05, 0.05)
        )
    else:  # blobs of flow
        flow = field > float(rng.uniform(0.3, 1.2))
    luma = np.clip(rng.uniform(140.0, 210.0) + 30.0 * field, 60.0, 240.0)  # red .. yellow
    out = image.copy()
    region = out[y0 : y0 + bh, x0 : x0 + bw]
    region[flow] = luma[flow].astype(np.uint8)
    pil = Image.fromarray(out, mode="L")
    ImageDraw.Draw(pil).rectangle(
        [x0, y0, x0 + bw - 1, y0 + bh - 1], outline=int(rng.integers(150, 256))
    )
    out = np.array(pil)
    out[~geometry.mask] = image[~geometry.mask]
    return out


def dual_view(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A scanner's dual-screen layout: the image twice side by side (the second mirrored in
    half the versions, as a second plane often is), a black gap between, squeezed back to the
    image's size as the worker's square resize squeezes a wide screen. Both halves carry the
    same defects, so the label is unchanged."""
    h, w = image.shape
    second = image[:, ::-1] if rng.random() < 0.5 else image
    gap = _between(rng, 0, max(1, w // 12))
    wide = np.zeros((h, 2 * w + gap), dtype=np.uint8)
    wide[:, :w] = image
    wide[:, w + gap :] = second
    squeezed = Image.fromarray(wide, mode="L").resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(squeezed)


def inference_crop(image: np.ndarray, size: int) -> tuple[np.ndarray, bool]:
    """The image as the worker would score it after its border heuristic: cut to the box
    ``dicom_io.borders.find_box`` finds and resized back to ``size`` (bilinear); unchanged
    when the box is the whole image. Returns the image and whether it was cut."""
    from dicom_io.borders import find_box

    box, _ = find_box([image])
    if box.width == image.shape[1] and box.height == image.shape[0]:
        return image, False
    cut = box.apply(image)
    resized = Image.fromarray(np.ascontiguousarray(cut), mode="L").resize(
        (size, size), Image.Resampling.BILINEAR
    )
    return np.asarray(resized), True

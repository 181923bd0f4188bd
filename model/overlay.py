"""Pictures of saliency heatmaps (:mod:`model.saliency`): a frame with its heatmaps laid over
it, side by side, and one line of legend drawn under them.

numpy and Pillow only. The heatmaps are at the preset size over the frame squashed to a
square (as the network saw it); they are stretched back over the frame as dicom_io gave it
(the cropped frame), so a heat at the left of the map is at the left of the frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from model.preprocess import to_grey
from model.saliency import GRADCAM, Heatmap

__all__ = ["colourise", "legend", "overlay", "panels", "png_bytes"]

PANEL = 256  # the shortest a panel's longest side is drawn (small frames are enlarged)
LARGEST = 512  # the longest a panel's longest side is drawn (large frames are shrunk)
LEGEND_HEIGHT = 20
_FONT_SIZE = 12

# A perceptual dark-blue -> red -> yellow ramp (control points of matplotlib's "inferno",
# rounded): hot is bright, so heat reads on a dark ultrasound frame and in grey print.
_RAMP = np.array(
    [
        (0.00, 0, 0, 4),
        (0.15, 31, 12, 72),
        (0.30, 85, 15, 109),
        (0.45, 136, 34, 106),
        (0.60, 186, 54, 85),
        (0.75, 227, 89, 51),
        (0.88, 249, 140, 10),
        (1.00, 252, 255, 164),
    ],
    dtype=np.float32,
)


def colourise(heat: np.ndarray) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` of a heatmap in 0..1 on the ramp."""
    h = np.clip(np.asarray(heat, dtype=np.float32), 0.0, 1.0)
    channels = [np.interp(h, _RAMP[:, 0], _RAMP[:, i]) for i in (1, 2, 3)]
    return np.clip(np.rint(np.stack(channels, axis=-1)), 0, 255).astype(np.uint8)


def _panel_size(shape: tuple[int, ...], longest_side: int | None = None) -> tuple[int, int]:
    """(width, height) a frame of ``shape`` is drawn at: its longest side ``longest_side``
    when given, else its own size brought within PANEL..LARGEST."""
    h, w = int(shape[0]), int(shape[1])
    longest = max(h, w)
    scale = min(LARGEST / longest, max(1.0, PANEL / longest))
    if longest_side is not None:
        scale = longest_side / longest
    return max(1, round(w * scale)), max(1, round(h * scale))


def _stretch(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    image = Image.fromarray(np.asarray(heat, dtype=np.float32), mode="F")
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def _frame_rgb(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The frame as the model judged it (grey), drawn as RGB at ``size``."""
    grey = Image.fromarray(to_grey(frame), mode="L").resize(size, Image.Resampling.BILINEAR)
    return np.asarray(grey.convert("RGB"))


def overlay(frame: np.ndarray, heat: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """The frame (grey, at ``size`` or its panel size) with ``heat`` blended over it: the
    frame shows through where the heat is low, the ramp's colour where it is high."""
    size = size or _panel_size(frame.shape)
    base = _frame_rgb(frame, size).astype(np.float32)
    h = np.clip(_stretch(heat, size), 0.0, 1.0)
    alpha = (0.75 * np.sqrt(h))[..., None]
    out = base * (1.0 - alpha) + colourise(h).astype(np.float32) * alpha
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _describe(h: Heatmap) -> str:
    how = "Grad-CAM layer4" if h.method == GRADCAM else f"occlusion ({h.window}s)"
    if h.target == "score":
        what = f"score {h.value:.1f}: evidence for a low score"
    else:
        what = f"{h.target} p {h.value:.2f}: evidence for it"
    return f"{what}, {how}" + (" (none found)" if h.empty else "")


def legend(heatmaps: Sequence[Heatmap], *, first: str = "frame", note: str = "") -> str:
    """The one-line legend of a picture of ``heatmaps``: the panels from left to right
    (``first`` names the left panel, empty: none) and how each map was made."""
    parts = ([first] if first else []) + [_describe(h) for h in heatmaps]
    text = " | ".join(parts) + "; bright = strong"
    return f"{text}; {note}" if note else text


def panels(
    frame: np.ndarray,
    heatmaps: Sequence[Heatmap],
    line: str,
    *,
    with_frame: bool = True,
    longest_side: int | None = None,
) -> np.ndarray:
    """RGB uint8: the frame (when ``with_frame``), then one overlay per heatmap, side by
    side, each with its longest side ``longest_side`` (default: see PANEL), and ``line``
    written under them (the picture widens to fit it; no line: no legend strip)."""
    size = _panel_size(frame.shape, longest_side)
    tiles = ([_frame_rgb(frame, size)] if with_frame else []) + [
        overlay(frame, h.heat, size) for h in heatmaps
    ]
    if not tiles:
        tiles = [_frame_rgb(frame, size)]
    gap = 4
    font = ImageFont.load_default(size=_FONT_SIZE)
    text_width = int(ImageDraw.Draw(Image.new("L", (1, 1))).textlength(line, font=font)) + 8
    width = max(sum(t.shape[1] for t in tiles) + gap * (len(tiles) - 1), text_width)
    strip = LEGEND_HEIGHT if line else 0
    canvas = Image.new("RGB", (width, size[1] + strip), (16, 16, 16))
    x = 0
    for tile in tiles:
        canvas.paste(Image.fromarray(tile), (x, 0))
        x += tile.shape[1] + gap
    if line:
        ImageDraw.Draw(canvas).text((4, size[1] + 3), line, fill=(235, 235, 235), font=font)
    return np.asarray(canvas)


def png_bytes(image: np.ndarray) -> bytes:
    """PNG file content of an RGB uint8 image."""
    import io

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()

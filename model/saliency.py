"""Saliency: where in a frame the evidence for its score and for a defect lies.

Computed on demand (``usqa explain``, ``usqa report --html --thumbnails``), never on the
scoring path: a frame goes through the same preprocessing as scoring (:class:`Preprocess`
``image``: grey, resized to the preset size), then one of two methods gives a heatmap at
that size (0..1, 1 = the strongest evidence in the frame):

- **Grad-CAM** (Selvaraju et al., 2017) on the shared backbone's last convolution block
  (``layer4``, 8 x 8 positions at 256 pixels): the block's activations weighted by the
  spatial mean of the target's gradient, kept where positive. For the score the target is
  the *negative* score (evidence for a LOW score); for a defect, its logit. One backward
  pass per target; the head is linear, so for the score this is exactly the share each
  position takes in pulling the score down.
- **Occlusion** (Zeiler and Fergus, 2014): the frame is covered one window at a time and
  re-scored; a window's heat is how much covering it lowers the defect's logit (or raises
  the score). Slower (one forward pass per window, all targets from the same passes) but it
  asks the question directly, which Grad-CAM answers badly in two cases:

  * defects that cover the whole frame (``low_gain``, ``high_gain``, ``low_contrast``,
    ``noise``, ``no_signal``): every position carries the same evidence, and Grad-CAM's
    gradient-weighted map is then dominated by whichever positions have the largest
    activations (bright tissue, the near field), not by the defect. Occlusion with a
    neutral grey window (the preprocessing mean: zero network input) shows which parts of
    the frame the call rests on.
  * ``dead_elements``: streaks a few pixels wide along the scan lines, far below the
    32-pixel cells of an 8 x 8 Grad-CAM. Occlusion there uses full-height strips 8 pixels
    wide, filled by interpolating between the columns either side (the streak is gone,
    nothing new is drawn), so the heat marks the streaked columns at strip resolution.

The method per target is :data:`METHODS`, with the reason; docs/explain.md is the long
form. Torch and numpy only; no worker imports but :mod:`worker.errors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from model.checkpoint import Checkpoint
from model.defects import DEFECTS
from model.preprocess import Preprocess
from model.scorer import Assessment
from worker.errors import ModelError

__all__ = [
    "GRADCAM",
    "METHODS",
    "OCCLUSION",
    "Heatmap",
    "Method",
    "Saliency",
    "mass_share",
]

GRADCAM = "grad-cam"
OCCLUSION = "occlusion"


@dataclass(frozen=True)
class Method:
    """How a target's heatmap is computed, and why (shown in docs and legends)."""

    name: str  # GRADCAM or OCCLUSION
    window: str  # "layer4" for Grad-CAM; "square" (grey fill) or "strip" (interpolated)
    why: str


_GLOBAL = "covers the whole frame: Grad-CAM follows the strongest activations, not the defect"
METHODS: dict[str, Method] = {
    "score": Method(GRADCAM, "layer4", "evidence for a low score is regional (shadows, blur)"),
    "low_gain": Method(OCCLUSION, "square", _GLOBAL),
    "high_gain": Method(OCCLUSION, "square", _GLOBAL),
    "low_contrast": Method(OCCLUSION, "square", _GLOBAL),
    "noise": Method(OCCLUSION, "square", _GLOBAL),
    "depth_attenuation": Method(GRADCAM, "layer4", "a region (the far field), 32 px cells fit"),
    "shadowing": Method(GRADCAM, "layer4", "bands and wedges tens of pixels wide: cells fit"),
    "no_signal": Method(OCCLUSION, "square", _GLOBAL),
    "blur": Method(GRADCAM, "layer4", "loss of texture where tissue is: cells fit"),
    "compression": Method(GRADCAM, "layer4", "block damage in textured regions: cells fit"),
    "dead_elements": Method(
        OCCLUSION, "strip", "streaks a few px wide: 32 px Grad-CAM cells blur them away"
    ),
}
assert set(METHODS) == {"score", *DEFECTS}

SQUARE = 64  # occlusion window (px at the preset size) and its stride
SQUARE_STRIDE = 32
STRIP = 8
STRIP_STRIDE = 8


@dataclass(frozen=True)
class Heatmap:
    """One target's heatmap on a frame at the preset size."""

    target: str  # "score" or a defect name
    method: str
    value: float  # the score (0..100) or the defect probability of the frame
    heat: np.ndarray  # float32 (size, size), 0..1; all zero: no evidence found
    window: str = "layer4"

    @property
    def empty(self) -> bool:
        return not bool(self.heat.max() > 0)


def mass_share(heat: np.ndarray, region: np.ndarray) -> float:
    """The share of ``heat``'s total inside the boolean ``region`` (same shape); 0 for an
    empty map."""
    total = float(heat.sum())
    return float(heat[region].sum()) / total if total > 0 else 0.0


def _normalised(heat: torch.Tensor | np.ndarray) -> np.ndarray:
    arr = heat.detach().cpu().numpy() if isinstance(heat, torch.Tensor) else heat
    arr = np.nan_to_num(np.asarray(arr, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    arr = np.clip(arr, 0.0, None)
    top = float(arr.max())
    return (arr / top).astype(np.float32) if top > 0 else np.zeros_like(arr)


class Saliency:
    """Heatmaps from one loaded checkpoint (float32, unfolded BatchNorm, eval mode).

    Build it once per command and reuse it; it holds its own copy of the network, so a
    Scorer in the same process is untouched."""

    def __init__(self, checkpoint: Checkpoint, device: str = "cpu", batch_size: int = 16):
        self.checkpoint = checkpoint
        self.device = device
        self.batch_size = max(1, batch_size)
        self.net: nn.Module = checkpoint.net.to(device).eval()
        self.outputs = checkpoint.outputs
        self.version = checkpoint.sha256[:12]
        if not hasattr(self.net, "layer4"):
            raise ModelError("saliency: the network has no layer4 (not a ResNet)")

    @classmethod
    def load(cls, weights: str | Path | None = None, device: str = "cpu") -> Saliency:
        """A Saliency of the checkpoint at ``weights`` (None: the shipped model)."""
        from model.checkpoint import load_checkpoint
        from model.scorer import SHIPPED_WEIGHTS

        return cls(load_checkpoint(Path(weights) if weights else SHIPPED_WEIGHTS, device), device)

    @property
    def preprocess(self) -> Preprocess:
        return self.checkpoint.preprocess

    @property
    def defect_names(self) -> tuple[str, ...]:
        return self.checkpoint.defect_names

    def assess(self, frames: Sequence[np.ndarray]) -> Assessment:
        """What this network says about the frames (as :meth:`Scorer.assess`, in float32)."""
        from model.inference import forward_images

        images = [self.preprocess.image(f) for f in frames]
        raw = forward_images(self.net, images, self.preprocess, self.batch_size, False, self.device)
        return Assessment.from_outputs(raw, self.outputs, self.checkpoint.target_scale)

    def _values(self, raw: torch.Tensor) -> dict[str, float]:
        """Score (label units) and defect probabilities of one row of head outputs."""
        row = raw.detach().float().cpu().numpy().reshape(-1)
        out = {"score": float(np.clip(row[0] * self.checkpoint.target_scale, 0.0, 100.0))}
        for name in self.defect_names:
            out[name] = float(1.0 / (1.0 + np.exp(-row[self.outputs.index(name)])))
        return out

    def _column(self, target: str) -> tuple[int, float]:
        """The head column of ``target`` and the sign of the evidence (-1: a low score)."""
        if target == "score":
            return 0, -1.0
        if target not in self.defect_names:
            raise ModelError(
                f"saliency: model {self.version} has no {target!r} output (it names "
                f"{', '.join(self.defect_names) or 'no defects'})"
            )
        return self.outputs.index(target), 1.0

    def explain(self, frame: np.ndarray, targets: Sequence[str]) -> list[Heatmap]:
        """A heatmap per target (``"score"`` or a defect name this model names) of one
        frame as dicom_io yields it (uint8 grey or RGB, any size), each by its method in
        :data:`METHODS`. The heatmaps are at the preset size, over the frame as the network
        saw it (resized to a square)."""
        image = self.preprocess.image(frame)
        for t in targets:
            self._column(t)
        x = self.preprocess.tensor([image]).to(self.device)
        cams, raw = self._gradcam(x, [t for t in targets if METHODS[t].name == GRADCAM])
        values = self._values(raw)
        occ = self._occlusion(image, raw, [t for t in targets if METHODS[t].name == OCCLUSION])
        heats = {**cams, **occ}
        return [
            Heatmap(t, METHODS[t].name, values[t], heats[t], METHODS[t].window) for t in targets
        ]

    def _gradcam(
        self, x: torch.Tensor, targets: Sequence[str]
    ) -> tuple[dict[str, np.ndarray], torch.Tensor]:
        """Grad-CAM maps of ``targets`` on ``layer4`` and the raw head outputs."""
        kept: list[torch.Tensor] = []
        layer: nn.Module = self.net.layer4  # type: ignore[assignment]
        hook = layer.register_forward_hook(lambda _m, _i, out: kept.append(out))
        try:
            with torch.enable_grad():
                raw = self.net(x).float()
                acts = kept[0]
                maps: dict[str, np.ndarray] = {}
                for i, t in enumerate(targets):
                    col, sign = self._column(t)
                    (grad,) = torch.autograd.grad(
                        sign * raw[0, col], acts, retain_graph=i < len(targets) - 1
                    )
                    weights = grad.mean(dim=(2, 3), keepdim=True)
                    cam = functional.relu((weights * acts).sum(dim=1, keepdim=True))
                    up = functional.interpolate(
                        cam, size=x.shape[-2:], mode="bilinear", align_corners=False
                    )
                    maps[t] = _normalised(up[0, 0])
        finally:
            hook.remove()
        return maps, raw[0].detach()

    @torch.inference_mode()
    def _occlusion(
        self, image: np.ndarray, raw: torch.Tensor, targets: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """Occlusion maps of ``targets``: square windows (grey fill) or strips
        (interpolated fill) as :data:`METHODS` says; one sweep per window kind."""
        out: dict[str, np.ndarray] = {}
        for window in ("square", "strip"):
            wanted = [t for t in targets if METHODS[t].window == window]
            if wanted:
                out.update(self._sweep(image, raw, wanted, window))
        return out

    def _sweep(
        self, image: np.ndarray, raw: torch.Tensor, targets: Sequence[str], window: str
    ) -> dict[str, np.ndarray]:
        size = image.shape[0]
        boxes = _boxes(size, window)
        x = self.preprocess.tensor([image])[0]
        covered = _covered(x, boxes, window)
        cols = [self._column(t) for t in targets]
        base = np.array([s * float(raw[c]) for c, s in cols], dtype=np.float32)
        drops = np.zeros((len(boxes), len(targets)), dtype=np.float32)
        for start in range(0, len(boxes), self.batch_size):
            batch = covered[start : start + self.batch_size].to(self.device)
            y = self.net(batch).float().cpu().numpy()
            now = np.stack([s * y[:, c] for c, s in cols], axis=1)
            drops[start : start + len(batch)] = base[None, :] - now
        heat = np.zeros((len(targets), size, size), dtype=np.float32)
        count = np.zeros((size, size), dtype=np.float32)
        for (y0, y1, x0, x1), drop in zip(boxes, drops, strict=True):
            heat[:, y0:y1, x0:x1] += np.clip(drop, 0.0, None)[:, None, None]
            count[y0:y1, x0:x1] += 1.0
        heat /= np.maximum(count, 1.0)[None]
        return {t: _normalised(heat[i]) for i, t in enumerate(targets)}


def _boxes(size: int, window: str) -> list[tuple[int, int, int, int]]:
    """The windows ``(y0, y1, x0, x1)`` of a sweep over a ``size`` square."""
    if window == "strip":
        return [(0, size, x, min(size, x + STRIP)) for x in _starts(size, STRIP, STRIP_STRIDE)]
    starts = _starts(size, SQUARE, SQUARE_STRIDE)
    return [(y, min(size, y + SQUARE), x, min(size, x + SQUARE)) for y in starts for x in starts]


def _starts(size: int, width: int, stride: int) -> list[int]:
    last = max(0, size - width)
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts


def _covered(
    x: torch.Tensor, boxes: Sequence[tuple[int, int, int, int]], window: str
) -> torch.Tensor:
    """One copy of the network input ``x`` (3, H, W) per window, the window covered: grey
    (zero input, the preprocessing mean) for squares; for strips, each row interpolated
    linearly between the columns just outside the strip."""
    batch = x.unsqueeze(0).repeat(len(boxes), 1, 1, 1)
    width = x.shape[-1]
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        if window == "square":
            batch[i, :, y0:y1, x0:x1] = 0.0
            continue
        left = x[:, y0:y1, max(0, x0 - 1)]
        right = x[:, y0:y1, min(width - 1, x1)]
        steps = torch.linspace(0.0, 1.0, x1 - x0 + 2, dtype=x.dtype)[1:-1]
        batch[i, :, y0:y1, x0:x1] = left[..., None] + (right - left)[..., None] * steps
    return batch

"""The batch Scorer: frames in, quality scores 0..100 out."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.checkpoint import Checkpoint, load_checkpoint
from model.inference import predict_images
from model.network import fold_batchnorm
from worker.errors import ConfigError, ModelError

__all__ = ["SHIPPED_WEIGHTS", "Scorer", "bf16_supported"]

log = logging.getLogger(__name__)

SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "weights" / "usqa-resnet18-graded.pt"


def bf16_supported(device: str) -> bool:
    """Whether ``device`` runs bf16 natively (AVX512-BF16/AMX on CPU, Ampere+ on CUDA)."""
    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class Scorer:
    """Scores frames with one loaded checkpoint. Build it once per process and reuse it.

    ``precision``: ``fp32``, ``bf16`` (autocast) or ``auto`` = bf16 where the hardware
    supports it natively (measured on BUSI test images: scores within 0.5 points of fp32,
    see model/MODEL_CARD.md), else fp32.
    """

    def __init__(self, checkpoint: Checkpoint, device: str, bf16: bool, batch_size: int) -> None:
        self.checkpoint = checkpoint
        self.device = device
        self.bf16 = bf16
        self.batch_size = batch_size
        self.version: str = checkpoint.sha256[:12]

    @classmethod
    def load(
        cls,
        weights: str | Path | None = None,
        device: str = "cpu",
        precision: str = "auto",
        threads: int = 0,
        batch_size: int = 32,
        fold_bn: bool = True,
    ) -> Scorer:
        """Load ``weights`` (None: the shipped model) for inference. ``fold_bn`` folds each
        BatchNorm into its convolution (same scores, fewer operations). Raises ModelError
        for a bad file."""
        if precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"precision {precision!r}: expected auto, fp32 or bf16")
        if batch_size < 1:
            raise ConfigError(f"batch size {batch_size}: expected 1 or more")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device {device!r}: no CUDA GPU is available; use cpu")
        if threads > 0:
            torch.set_num_threads(threads)
        path = Path(weights) if weights is not None else SHIPPED_WEIGHTS
        if weights is None and not path.is_file():
            raise ModelError(
                f"{path}: the shipped model weights are missing from this installation; "
                "reinstall usqa or set USQA_WEIGHTS to a checkpoint"
            )
        checkpoint = load_checkpoint(path, device=device)
        if fold_bn:
            fold_batchnorm(checkpoint.net)
        checkpoint.net.to(memory_format=torch.channels_last)
        bf16 = precision == "bf16" or (precision == "auto" and bf16_supported(device))
        log.info(
            "loaded model %s from %s (%s, %s)",
            checkpoint.sha256[:12],
            path.name,
            device,
            "bf16" if bf16 else "fp32",
        )
        return cls(checkpoint, device, bf16, batch_size)

    @classmethod
    def from_settings(cls, settings: Any) -> Scorer:
        """Read ``weights``, ``device``, ``precision``, ``threads`` and ``batch_size``."""
        return cls.load(
            weights=settings.weights,
            device=settings.device,
            precision=settings.precision,
            threads=settings.threads,
            batch_size=settings.batch_size,
        )

    @property
    def metadata(self) -> dict[str, Any]:
        """The checkpoint's metadata (protocol, training command, metrics, ...)."""
        return self.checkpoint.meta

    def score_frames(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """A float32 score 0..100 per frame (uint8 ``(H, W)`` or ``(H, W, 3)``, any size)."""
        if len(frames) == 0:
            return np.empty(0, dtype=np.float32)
        prep = self.checkpoint.preprocess
        images = [prep.image(f) for f in frames]
        return predict_images(
            self.checkpoint.net,
            images,
            prep,
            self.checkpoint.target_scale,
            batch_size=self.batch_size,
            bf16=self.bf16,
            device=self.device,
        )

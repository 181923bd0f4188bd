"""Batched forward passes shared by the Scorer, training-time validation and evaluation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from model.preprocess import Preprocess

__all__ = ["autocast", "forward_images", "predict_images"]


def autocast(device: str, bf16: bool) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on ``device`` when ``bf16``, else a no-op context."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


@torch.inference_mode()
def forward_images(
    net: nn.Module,
    images: Sequence[np.ndarray],
    preprocess: Preprocess,
    batch_size: int = 32,
    bf16: bool = False,
    device: str = "cpu",
) -> np.ndarray:
    """The raw head outputs ``(N, outputs)`` (float32) of uint8 grey images already at
    preset size."""
    net.eval()
    parts = []
    for part in _chunks(len(images), batch_size):
        x = preprocess.tensor(images[part]).to(device).contiguous(memory_format=torch.channels_last)
        with autocast(device, bf16):
            y = net(x)
        parts.append(y.float().reshape(y.shape[0], -1).cpu().numpy())
    if not parts:
        return np.empty((0, 1), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


def predict_images(
    net: nn.Module,
    images: Sequence[np.ndarray],
    preprocess: Preprocess,
    target_scale: float,
    batch_size: int = 32,
    bf16: bool = False,
    device: str = "cpu",
) -> np.ndarray:
    """Scores (label units, clamped to 0..100) of uint8 grey images already at preset size."""
    raw = forward_images(net, images, preprocess, batch_size, bf16, device)
    return np.clip(raw[:, 0] * target_scale, 0.0, 100.0).astype(np.float32)

"""The quality model: ResNet-18 regressor, its preprocessing, pseudo-label degradations,
training, evaluation metrics and the batch :class:`Scorer` (see model/MODEL_CARD.md).

The names below load on first use, so that a process needing only the preprocessing (the
decoder child) does not import torch."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model.checkpoint import load_checkpoint, save_checkpoint
    from model.grading import Grading, ScanScore
    from model.network import build_model
    from model.preprocess import Preprocess
    from model.scorer import SHIPPED_WEIGHTS, Scorer

__all__ = [
    "SHIPPED_WEIGHTS",
    "Grading",
    "Preprocess",
    "ScanScore",
    "Scorer",
    "build_model",
    "load_checkpoint",
    "save_checkpoint",
]

_HOMES = {
    "SHIPPED_WEIGHTS": "model.scorer",
    "Grading": "model.grading",
    "Preprocess": "model.preprocess",
    "ScanScore": "model.grading",
    "Scorer": "model.scorer",
    "build_model": "model.network",
    "load_checkpoint": "model.checkpoint",
    "save_checkpoint": "model.checkpoint",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value

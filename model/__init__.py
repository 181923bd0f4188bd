"""The quality model: ResNet-18 regressor, its preprocessing, pseudo-label degradations,
training, evaluation metrics and the batch :class:`Scorer` (see model/MODEL_CARD.md)."""

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

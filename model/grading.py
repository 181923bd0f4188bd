"""From frame scores to a scan's score and grade."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from worker.errors import ConfigError, InputError

__all__ = ["AGGREGATES", "Grading", "ScanScore"]

AGGREGATES = ("mean", "min", "p10")


@dataclass(frozen=True)
class ScanScore:
    """The summary of one scan's frame scores (0..100)."""

    score: float  # per the Grading's ``aggregate``
    mean: float
    min: float
    p10: float  # 10th percentile (linear interpolation)
    grade: str  # good | average | poor, from ``score``
    frames_scored: int


@dataclass(frozen=True)
class Grading:
    """Grade thresholds and how frame scores are aggregated (defaults: good >= 80,
    average >= 45, else poor; the scan's score is the mean of its frames)."""

    good: float = 80.0
    average: float = 45.0
    aggregate: str = "mean"

    def __post_init__(self) -> None:
        if not 0.0 <= self.average <= self.good <= 100.0:
            raise ConfigError(
                f"grade thresholds good={self.good}, average={self.average}: need "
                "0 <= average <= good <= 100"
            )
        if self.aggregate not in AGGREGATES:
            raise ConfigError(f"aggregate {self.aggregate!r}: expected one of {AGGREGATES}")

    @classmethod
    def from_settings(cls, settings: Any) -> Grading:
        """Read ``good_threshold``, ``average_threshold`` and ``aggregate`` off settings."""
        return cls(
            good=float(settings.good_threshold),
            average=float(settings.average_threshold),
            aggregate=str(settings.aggregate),
        )

    def grade(self, score: float) -> str:
        """``good``, ``average`` or ``poor``."""
        if score >= self.good:
            return "good"
        if score >= self.average:
            return "average"
        return "poor"

    def summarise(self, frame_scores: Sequence[float] | np.ndarray) -> ScanScore:
        """Aggregate the frame scores of one scan; InputError if there are none."""
        scores = np.asarray(frame_scores, dtype=np.float64).reshape(-1)
        if scores.size == 0:
            raise InputError("no frames were scored for this scan; nothing to grade")
        if not np.all(np.isfinite(scores)):
            raise InputError("a frame score is not a finite number; cannot grade the scan")
        if scores.size == 1:  # a still image: every aggregate is its one score
            only = float(scores[0])
            values = {"mean": only, "min": only, "p10": only}
        else:
            values = {
                "mean": float(scores.mean()),
                "min": float(scores.min()),
                "p10": float(np.percentile(scores, 10)),
            }
        score = values[self.aggregate]
        return ScanScore(
            score=score,
            mean=values["mean"],
            min=values["min"],
            p10=values["p10"],
            grade=self.grade(score),
            frames_scored=int(scores.size),
        )

"""From frame results to a scan's score, grade, defects and the not-ultrasound gate.

These are the pure outcome decisions of scoring (no I/O):

- the scan's score aggregates its frame scores (``mean``, ``min`` or ``p10``);
- the grade comes from the thresholds (good >= 80, average >= 45 by default), except that a
  scan whose first defect is ``no_signal`` is graded ``poor`` whatever its score: a blank
  capture is a real failure;
- the defects the scan lists, most probable first (see :mod:`model.defects`);
- the gate: when the mean not-ultrasound probability of its frames is above
  ``not_ultrasound_threshold`` the scan is not an ultrasound image (a worksheet, chart,
  photograph or another modality's image) and ``skip_reason`` says so; such a scan is
  recorded ``skipped`` and never counts in QA figures. A threshold of 1 turns the gate off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from model.defects import DEFAULT_THRESHOLD, DEFECTS, DefectCall, frame_first_defects, scan_defects
from worker.errors import ConfigError, InputError

__all__ = ["AGGREGATES", "Grading", "GradingSettings", "ScanScore"]

AGGREGATES = ("mean", "min", "p10")
DEFAULT_GATE_THRESHOLD = 0.5


@dataclass(frozen=True)
class ScanScore:
    """The summary of one scan's frame results."""

    score: float  # per the Grading's ``aggregate``
    mean: float
    min: float
    p10: float  # 10th percentile (linear interpolation)
    grade: str  # good | average | poor
    frames_scored: int
    # the defects listed, most probable first; empty for a clean scan or a model that
    # does not judge defects (``defects_judged`` False)
    defects: tuple[DefectCall, ...] = ()
    defects_judged: bool = False
    # per scored frame (in frame order): its most probable defect at the threshold, or None
    frame_defects: tuple[str | None, ...] = field(default=(), repr=False)
    # mean not-ultrasound probability of the frames (None: the model has no gate)
    not_ultrasound: float | None = None
    skip_reason: str | None = None  # set when the gate says this is not ultrasound

    @property
    def first_defect(self) -> str | None:
        return self.defects[0].name if self.defects else None


class GradingSettings(Protocol):
    """The settings :meth:`Grading.from_settings` reads (``worker.settings.Settings`` has
    them; ``defect_threshold`` and ``not_ultrasound_threshold`` may be missing on an older
    settings-like object, and then take their defaults)."""

    @property
    def good_threshold(self) -> float: ...
    @property
    def average_threshold(self) -> float: ...
    @property
    def aggregate(self) -> str: ...
    @property
    def defect_threshold(self) -> float: ...
    @property
    def not_ultrasound_threshold(self) -> float: ...


@dataclass(frozen=True)
class Grading:
    """Grade thresholds, how frame scores are aggregated, the defect threshold and the
    not-ultrasound gate (defaults: good >= 80, average >= 45, mean, 0.5, 0.5)."""

    good: float = 80.0
    average: float = 45.0
    aggregate: str = "mean"
    defect_threshold: float = DEFAULT_THRESHOLD
    not_ultrasound_threshold: float = DEFAULT_GATE_THRESHOLD

    def __post_init__(self) -> None:
        if not 0.0 <= self.average <= self.good <= 100.0:
            raise ConfigError(
                f"grade thresholds good={self.good}, average={self.average}: need "
                "0 <= average <= good <= 100"
            )
        if self.aggregate not in AGGREGATES:
            raise ConfigError(f"aggregate {self.aggregate!r}: expected one of {AGGREGATES}")
        for name, value in (
            ("defect threshold", self.defect_threshold),
            ("not-ultrasound threshold", self.not_ultrasound_threshold),
        ):
            if not 0.0 < value <= 1.0:
                raise ConfigError(f"{name} {value}: expected a probability above 0, at most 1")

    @classmethod
    def from_settings(cls, settings: GradingSettings) -> Grading:
        """Read ``good_threshold``, ``average_threshold``, ``aggregate``,
        ``defect_threshold`` and ``not_ultrasound_threshold`` off settings."""
        return cls(
            good=float(settings.good_threshold),
            average=float(settings.average_threshold),
            aggregate=str(settings.aggregate),
            defect_threshold=float(getattr(settings, "defect_threshold", DEFAULT_THRESHOLD)),
            not_ultrasound_threshold=float(
                getattr(settings, "not_ultrasound_threshold", DEFAULT_GATE_THRESHOLD)
            ),
        )

    def grade(self, score: float, first_defect: str | None = None) -> str:
        """``good``, ``average`` or ``poor`` (always ``poor`` when the first defect is
        ``no_signal``)."""
        if first_defect == "no_signal":
            return "poor"
        if score >= self.good:
            return "good"
        if score >= self.average:
            return "average"
        return "poor"

    def summarise(
        self,
        frame_scores: Sequence[float] | np.ndarray,
        defect_probabilities: Sequence[Sequence[float]] | np.ndarray | None = None,
        not_ultrasound: Sequence[float] | np.ndarray | None = None,
        defect_names: Sequence[str] = DEFECTS,
    ) -> ScanScore:
        """Aggregate the frame results of one scan (all in frame order); InputError if there
        are none. ``defect_probabilities`` ``(frames, defects)`` and ``not_ultrasound``
        ``(frames,)`` are None for a model without those heads."""
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
        defects: tuple[DefectCall, ...] = ()
        frame_defects: tuple[str | None, ...] = ()
        judged = defect_probabilities is not None and len(defect_names) > 0
        if judged:
            probs = np.asarray(defect_probabilities, dtype=np.float64)
            if probs.shape != (scores.size, len(defect_names)):
                raise InputError(
                    f"defect probabilities of shape {probs.shape} for {scores.size} frames; "
                    f"expected ({scores.size}, {len(defect_names)})"
                )
            defects = scan_defects(probs, self.defect_threshold, defect_names)
            frame_defects = tuple(frame_first_defects(probs, self.defect_threshold, defect_names))
        gate: float | None = None
        skip_reason = None
        if not_ultrasound is not None:
            gate_values = np.asarray(not_ultrasound, dtype=np.float64).reshape(-1)
            if gate_values.size != scores.size:
                raise InputError(
                    f"{gate_values.size} not-ultrasound probabilities for {scores.size} frames"
                )
            gate = float(gate_values.mean())
            skip_reason = self.gate_reason(gate)
        score = values[self.aggregate]
        return ScanScore(
            score=score,
            mean=values["mean"],
            min=values["min"],
            p10=values["p10"],
            grade=self.grade(score, defects[0].name if defects else None),
            frames_scored=int(scores.size),
            defects=defects,
            defects_judged=judged,
            frame_defects=frame_defects,
            not_ultrasound=gate,
            skip_reason=skip_reason,
        )

    def gate_reason(self, probability: float) -> str | None:
        """The skip reason for a scan whose mean not-ultrasound probability is
        ``probability``, or None when it is ultrasound (at or below the threshold; a
        threshold of 1 never skips)."""
        if self.not_ultrasound_threshold >= 1.0 or probability <= self.not_ultrasound_threshold:
            return None
        return (
            "not an ultrasound image (a worksheet, chart, photograph or another modality's "
            f"image: not-ultrasound probability {probability:.2f}, above "
            f"USQA_NOT_ULTRASOUND_THRESHOLD {self.not_ultrasound_threshold:g}); not scored, "
            "not counted in QA figures"
        )

"""Grading with defects: the scan's defect list, no_signal is poor, the not-ultrasound gate."""

from __future__ import annotations

import numpy as np
import pytest

from model.defects import DEFECTS, frame_first_defects, scan_defects
from model.grading import Grading
from worker.errors import ConfigError, InputError


def _probs(frames: int, **values: float) -> np.ndarray:
    p = np.full((frames, len(DEFECTS)), 0.02)
    for name, value in values.items():
        p[:, DEFECTS.index(name)] = value
    return p


def test_a_clean_frame_lists_nothing() -> None:
    summary = Grading().summarise([92.0], _probs(1), [0.01])
    assert summary.defects == () and summary.first_defect is None
    assert summary.defects_judged and summary.grade == "good"
    assert summary.skip_reason is None and summary.not_ultrasound == pytest.approx(0.01)


def test_defects_are_listed_most_probable_first() -> None:
    summary = Grading().summarise([40.0], _probs(1, shadowing=0.7, noise=0.9, blur=0.3))
    assert [d.name for d in summary.defects] == ["noise", "shadowing"]
    assert summary.first_defect == "noise"
    assert summary.defects[0].as_dict() == {"name": "noise", "probability": 0.9, "frames": 1.0}


def test_a_cine_lists_a_defect_by_its_mean_probability_and_says_how_many_frames() -> None:
    p = _probs(4)
    p[:3, DEFECTS.index("no_signal")] = 0.95  # three blank frames of four
    p[:1, DEFECTS.index("blur")] = 0.9  # one blurred frame
    calls = scan_defects(p)
    assert [c.name for c in calls] == ["no_signal"]
    assert calls[0].frames == 0.75
    assert calls[0].probability == pytest.approx((3 * 0.95 + 0.02) / 4)
    assert frame_first_defects(p) == ["no_signal", "no_signal", "no_signal", None]


def test_no_signal_first_is_always_poor() -> None:
    grading = Grading()
    assert grading.summarise([95.0], _probs(1, no_signal=0.8)).grade == "poor"
    assert grading.summarise([95.0], _probs(1, noise=0.8)).grade == "good"
    assert grading.grade(99.0, "no_signal") == "poor"


def test_a_model_without_defect_head_judges_nothing() -> None:
    summary = Grading().summarise([50.0, 60.0])
    assert summary.defects == () and not summary.defects_judged
    assert summary.not_ultrasound is None and summary.skip_reason is None


def test_the_gate_skips_what_is_not_ultrasound() -> None:
    summary = Grading().summarise([70.0, 71.0], _probs(2), [0.9, 0.8])
    assert summary.skip_reason and "not an ultrasound image" in summary.skip_reason
    assert "0.85" in summary.skip_reason
    assert Grading().summarise([70.0], _probs(1), [0.5]).skip_reason is None  # not above
    off = Grading(not_ultrasound_threshold=1.0)
    assert off.summarise([70.0], _probs(1), [0.999]).skip_reason is None


def test_bad_shapes_and_thresholds_are_refused() -> None:
    with pytest.raises(InputError, match="defect probabilities"):
        Grading().summarise([70.0, 80.0], _probs(1))
    with pytest.raises(InputError, match="not-ultrasound"):
        Grading().summarise([70.0], _probs(1), [0.1, 0.2])
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError):
            Grading(defect_threshold=bad)
        with pytest.raises(ConfigError):
            Grading(not_ultrasound_threshold=bad)


def test_the_defect_threshold_is_a_setting() -> None:
    strict = Grading(defect_threshold=0.8)
    assert strict.summarise([60.0], _probs(1, blur=0.7)).defects == ()
    assert [d.name for d in Grading().summarise([60.0], _probs(1, blur=0.7)).defects] == ["blur"]

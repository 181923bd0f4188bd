"""Metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model.metrics import (
    bootstrap,
    confusion,
    grades,
    logistic4,
    plcc_logistic,
    regression,
    summary,
)


def test_regression_hand_computed() -> None:
    pred = np.array([1.0, 2.0, 3.0, 4.0])
    label = np.array([1.0, 3.0, 2.0, 4.0])
    m = regression(pred, label)
    assert m["mse"] == pytest.approx(0.5)  # (0 + 1 + 1 + 0) / 4
    assert m["rmse"] == pytest.approx(math.sqrt(0.5))
    assert m["mae"] == pytest.approx(0.5)
    assert m["plcc"] == pytest.approx(0.8)  # sum dxdy 4 / sqrt(5 * 5)
    assert m["srocc"] == pytest.approx(0.8)  # ranks equal the values
    assert m["krocc"] == pytest.approx(4 / 6)  # 5 concordant, 1 discordant pair


def test_constant_inputs_have_no_correlation() -> None:
    m = regression(np.array([60.0, 60.0, 60.0]), np.array([60.0, 60.0, 60.0]))
    assert m["mse"] == 0 and m["plcc"] is None and m["srocc"] is None and m["krocc"] is None


def test_logistic_mapping_linearises_a_sigmoid() -> None:
    x = np.linspace(-5, 5, 60)
    y = logistic4(x, 100.0, 20.0, 0.5, 1.2)
    assert regression(x, y)["plcc"] < 0.98
    assert plcc_logistic(x, y) == pytest.approx(1.0, abs=1e-6)


def test_grades_and_confusion() -> None:
    g = grades(np.array([100, 80, 79.9, 45, 44.9, 0]), good=80, average=45)
    assert g.tolist() == [0, 0, 1, 1, 2, 2]
    m = confusion(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]))
    assert m == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


def test_bootstrap_resamples_source_images() -> None:
    # two versions per source image; the statistic is the mean value
    values = np.array([10.0, 10.0, 20.0, 20.0, 30.0, 30.0])
    source = np.array([0, 0, 1, 1, 2, 2])
    seen_sizes = set()

    def stat(idx: np.ndarray) -> dict[str, float | None]:
        seen_sizes.add(idx.size)
        return {"mean": float(values[idx].mean())}

    ci = bootstrap(source, stat, rounds=300, seed=1)["mean"]
    assert ci is not None
    assert 10 <= ci[0] < 20 < ci[1] <= 30
    assert seen_sizes == {6}  # whole source images: always 3 x 2 versions


def test_summary_per_kind_with_intervals() -> None:
    rng = np.random.default_rng(0)
    label = np.tile([100.0, 60.0, 30.0], 20)
    pred = label + rng.normal(0, 3, label.size)
    kinds = np.tile(["original", "jpeg", "blur"], 20)
    source = np.repeat(np.arange(20), 3)
    s = summary(pred, label, kinds, source, rounds=50)
    assert set(s) == {"overall", "original", "jpeg", "blur"}
    assert s["overall"]["n"] == 60 and s["jpeg"]["n"] == 20
    assert s["overall"]["mse"] == pytest.approx(np.mean((pred - label) ** 2))
    assert s["jpeg"]["plcc"] is None  # one label value per type
    lo, hi = s["overall"]["ci"]["mse"]
    assert lo <= s["overall"]["mse"] <= hi
    assert sum(map(sum, s["overall"]["confusion"])) == 60

"""Evaluation metrics: errors, correlations, grade agreement, bootstrap intervals.

Correlations follow image-quality practice: PLCC (Pearson) on the raw predictions and after
the 4-parameter logistic mapping ``f(x) = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``
fitted from predictions to labels; SROCC (Spearman) and KROCC (Kendall tau-b). A correlation
with a constant input is undefined and reported as ``None``. Bootstrap intervals resample
*source images* (with all their degraded versions), because versions of one image are not
independent.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import optimize, stats

__all__ = [
    "GRADES",
    "bootstrap",
    "confusion",
    "fit_logistic",
    "grades",
    "logistic4",
    "plcc_logistic",
    "regression",
    "summary",
]

GRADES = ("good", "average", "poor")
REGRESSION_KEYS = ("mse", "rmse", "mae", "plcc", "plcc_logistic", "srocc", "krocc")


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """The 4-parameter logistic used to map predictions onto the label scale."""
    z = np.clip(-(x - b3) / (abs(b4) + 1e-9), -60.0, 60.0)
    return (b1 - b2) / (1.0 + np.exp(z)) + b2


def _constant(a: np.ndarray) -> bool:
    return a.size < 2 or bool(np.all(a == a[0]))


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def fit_logistic(
    pred: np.ndarray, label: np.ndarray, p0: Sequence[float] | None = None
) -> np.ndarray | None:
    """Parameters of the 4-parameter logistic from ``pred`` to ``label`` (None: no fit)."""
    if _constant(pred) or _constant(label) or pred.size < 5:
        return None
    if p0 is None:
        p0 = [float(label.max()), float(label.min()), float(np.mean(pred)), float(pred.std())]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, _ = optimize.curve_fit(
                logistic4, pred, label, p0=list(p0), maxfev=2000, method="trf"
            )
    except (RuntimeError, ValueError, optimize.OptimizeWarning):
        return None
    return np.asarray(params)


def plcc_logistic(
    pred: np.ndarray, label: np.ndarray, p0: Sequence[float] | None = None
) -> float | None:
    """PLCC after fitting the 4-parameter logistic from ``pred`` to ``label``."""
    params = fit_logistic(pred, label, p0)
    if params is None:
        return None
    mapped = logistic4(pred, *params)
    if _constant(mapped):
        return None
    return _finite(stats.pearsonr(mapped, label)[0])


def regression(
    pred: np.ndarray,
    label: np.ndarray,
    logistic: bool = True,
    p0: Sequence[float] | None = None,
) -> dict[str, Any]:
    """MSE, RMSE, MAE, PLCC (raw and logistic), SROCC and KROCC of ``pred`` vs ``label``."""
    pred = np.asarray(pred, dtype=np.float64)
    label = np.asarray(label, dtype=np.float64)
    err = pred - label
    mse = float(np.mean(err**2))
    out: dict[str, Any] = {"mse": mse, "rmse": math.sqrt(mse), "mae": float(np.mean(np.abs(err)))}
    if _constant(pred) or _constant(label):
        out.update(plcc=None, plcc_logistic=None, srocc=None, krocc=None)
        return out
    out["plcc"] = _finite(stats.pearsonr(pred, label)[0])
    out["plcc_logistic"] = plcc_logistic(pred, label, p0) if logistic else None
    out["srocc"] = _finite(stats.spearmanr(pred, label)[0])
    out["krocc"] = _finite(stats.kendalltau(pred, label)[0])
    return out


def grades(values: np.ndarray, good: float, average: float) -> np.ndarray:
    """Grade index per value: 0 good (>= good), 1 average (>= average), 2 poor."""
    v = np.asarray(values, dtype=np.float64)
    return np.where(v >= good, 0, np.where(v >= average, 1, 2))


def confusion(label_grades: np.ndarray, pred_grades: np.ndarray) -> list[list[int]]:
    """3 x 3 counts, rows = grade of the label, columns = grade of the prediction."""
    m = np.zeros((3, 3), dtype=int)
    np.add.at(m, (label_grades, pred_grades), 1)
    return m.tolist()


def bootstrap(
    source: np.ndarray,
    statistic: Callable[[np.ndarray], dict[str, float | None]],
    rounds: int = 1000,
    seed: int = 0,
) -> dict[str, tuple[float, float] | None]:
    """95% percentile intervals of each value ``statistic(indices)`` returns, resampling the
    source images in ``source`` (one id per version) with replacement."""
    ids = np.unique(source)
    members = {i: np.flatnonzero(source == i) for i in ids}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(rounds):
        picked = rng.choice(ids, size=ids.size, replace=True)
        idx = np.concatenate([members[i] for i in picked])
        for key, value in statistic(idx).items():
            if value is not None:
                draws.setdefault(key, []).append(value)
    result: dict[str, tuple[float, float] | None] = {}
    for key, values in draws.items():
        if len(values) < rounds // 2:
            result[key] = None
        else:
            lo, hi = np.percentile(values, [2.5, 97.5])
            result[key] = (float(lo), float(hi))
    return result


def _group(
    pred: np.ndarray,
    label: np.ndarray,
    good: float,
    average: float,
    p0: Sequence[float] | None = None,
) -> dict[str, Any]:
    out = regression(pred, label, logistic=True, p0=p0)
    lg, pg = grades(label, good, average), grades(pred, good, average)
    out["grade_accuracy"] = float(np.mean(lg == pg))
    out["n"] = int(pred.size)
    return out


def summary(
    pred: np.ndarray,
    label: np.ndarray,
    kinds: np.ndarray,
    source: np.ndarray,
    good: float = 80.0,
    average: float = 45.0,
    rounds: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Every metric, overall and per degradation kind, each with a bootstrap 95% interval
    (``ci``) over source images, plus the grade confusion matrix."""
    pred, label = np.asarray(pred, np.float64), np.asarray(label, np.float64)
    kinds, source = np.asarray(kinds), np.asarray(source)
    result: dict[str, dict[str, Any]] = {}
    groups = {"overall": np.ones(pred.size, dtype=bool)}
    for kind in dict.fromkeys(kinds.tolist()):
        groups[str(kind)] = kinds == kind
    for name, mask in groups.items():
        p, y, s = pred[mask], label[mask], source[mask]
        values = _group(p, y, good, average)
        fitted = fit_logistic(p, y)  # warm start of the bootstrap fits
        p0 = None if fitted is None else fitted.tolist()
        values["confusion"] = confusion(grades(y, good, average), grades(p, good, average))

        def stat(
            idx: np.ndarray, p: np.ndarray = p, y: np.ndarray = y, p0: Any = p0
        ) -> dict[str, Any]:
            g = _group(p[idx], y[idx], good, average, p0)
            return {k: g[k] for k in (*REGRESSION_KEYS, "grade_accuracy")}

        values["ci"] = bootstrap(s, stat, rounds=rounds, seed=seed) if rounds > 0 else {}
        result[name] = values
    return result

"""Figures of the defect head and the not-ultrasound gate (pure numpy; see the model card).

Definitions, per defect ``d`` and version ``v`` of a source image:

- ``v`` *shows* ``d`` when ``d`` was applied with a target of at least 0.5 (damage >= 0.125,
  a label of 90 or less: visible to a reader); ``v`` *lacks* ``d`` when ``d`` was not
  applied at all. Versions with ``d`` applied below that are left out of ``d``'s figures.
- the model *names* ``d`` when its probability is at least the defect threshold.
- precision = named and shows / named (among shows + lacks); recall = named and shows /
  shows.
- top-1: among single-defect versions in the upper half of their defect's severity range,
  the share whose most probable defect is the one applied (whether or not it reaches the
  threshold).
- false alarms: among clean versions, the share that names any defect.

Every share comes with a bootstrap 95 % interval over source images (``metrics.bootstrap``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from model.metrics import bootstrap

__all__ = [
    "clean_figures",
    "confusion_matrix",
    "gate_figures",
    "precision_recall",
    "top1",
    "upper_half",
]


def upper_half(name: str, severity: float, ranges: dict[str, tuple[float, float]]) -> bool:
    """Whether ``severity`` lies in the stronger half of ``name``'s range (JPEG quality:
    the lower qualities)."""
    mild, strong = ranges[name]
    middle = (mild + strong) / 2.0
    return severity >= middle if strong > mild else severity <= middle


def _share(values: np.ndarray, source: np.ndarray, rounds: int) -> dict[str, Any]:
    """A share, its count and a bootstrap interval over source images."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"share": None, "n": 0, "ci": None}
    ci = (
        bootstrap(source, lambda idx: {"share": float(values[idx].mean())}, rounds=rounds)["share"]
        if rounds > 0
        else None
    )
    return {"share": float(values.mean()), "n": int(values.size), "ci": ci}


def top1(
    probabilities: np.ndarray,
    applied: Sequence[str],
    names: Sequence[str],
    source: np.ndarray,
    rounds: int = 1000,
) -> dict[str, Any]:
    """Top-1 accuracy overall and per defect (rows: versions with one defect each)."""
    if len(applied) == 0:
        return {"overall": _share(np.empty(0), source, rounds)}
    best = [names[i] for i in np.argmax(probabilities, axis=1)]
    hit = np.array([b == a for b, a in zip(best, applied, strict=True)])
    out = {"overall": _share(hit, source, rounds)}
    applied_arr = np.asarray(applied)
    for name in names:
        m = applied_arr == name
        out[name] = _share(hit[m], source[m], rounds)
    return out


def precision_recall(
    probabilities: np.ndarray,
    targets: np.ndarray,
    names: Sequence[str],
    threshold: float,
    source: np.ndarray,
    rounds: int = 1000,
) -> dict[str, Any]:
    """Per defect precision and recall (see the module docstring); ``targets`` are the
    defect targets of each version (0 where not applied)."""
    named = probabilities >= threshold
    out: dict[str, Any] = {}
    for j, name in enumerate(names):
        shows = targets[:, j] >= 0.5
        lacks = targets[:, j] <= 0.0
        keep = shows | lacks
        p, s, src = named[keep, j], shows[keep], source[keep]

        def stat(idx: np.ndarray, p: np.ndarray = p, s: np.ndarray = s) -> dict[str, Any]:
            flagged = p[idx].sum()
            positives = s[idx].sum()
            tp = (p[idx] & s[idx]).sum()
            return {
                "precision": float(tp / flagged) if flagged else None,
                "recall": float(tp / positives) if positives else None,
            }

        values = stat(np.arange(p.size))
        ci = bootstrap(src, stat, rounds=rounds) if rounds > 0 and p.size else {}
        out[name] = {
            **values,
            "shows": int(s.sum()),
            "named": int(p.sum()),
            "ci": ci,
        }
    return out


def confusion_matrix(
    probabilities: np.ndarray,
    applied: Sequence[str | None],
    names: Sequence[str],
    threshold: float,
) -> dict[str, Any]:
    """Rows: the defect applied (``clean`` for none); columns: the most probable defect
    when it reaches the threshold, else ``none``. Counts."""
    rows = ["clean", *names]
    cols = [*names, "none"]
    m = np.zeros((len(rows), len(cols)), dtype=int)
    for prob, truth in zip(probabilities, applied, strict=True):
        i = rows.index(truth or "clean")
        k = int(np.argmax(prob))
        j = k if prob[k] >= threshold else len(cols) - 1
        m[i, j] += 1
    return {"rows": rows, "columns": cols, "counts": m.tolist()}


def clean_figures(
    probabilities: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    good: float,
    source: np.ndarray,
    rounds: int = 1000,
) -> dict[str, Any]:
    """Clean versions: share naming no defect, mean score, share graded good."""
    quiet = np.asarray(~(probabilities >= threshold).any(axis=1))
    return {
        "no_defect": _share(quiet, source, rounds),
        "mean_score": float(np.mean(scores)) if scores.size else None,
        "min_score": float(np.min(scores)) if scores.size else None,
        "graded_good": _share(scores >= good, source, rounds),
        "first_defects": _counts(probabilities, threshold),
    }


def _counts(probabilities: np.ndarray, threshold: float) -> dict[str, int]:
    """How often each column index is the first named defect (for false alarms)."""
    counts: dict[str, int] = {}
    for prob in probabilities:
        k = int(np.argmax(prob))
        if prob[k] >= threshold:
            counts[str(k)] = counts.get(str(k), 0) + 1
    return counts


def gate_figures(
    probabilities: np.ndarray, threshold: float, categories: Sequence[str], rounds: int = 1000
) -> dict[str, Any]:
    """Held-out non-ultrasound images: the share the gate skips, overall and per category
    (bootstrap over images)."""
    skipped = np.asarray(probabilities) > threshold
    ids = np.arange(skipped.size)
    cats = np.asarray(categories)
    out: dict[str, Any] = {"overall": _share(skipped, ids, rounds)}
    for cat in dict.fromkeys(categories):
        m = cats == cat
        out[str(cat)] = _share(skipped[m], ids[m], rounds)
    return out

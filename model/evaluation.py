"""Evaluation on a split: metrics per degradation type, severity ladders, scatter plot.

The degraded versions are made from the split's images at the preset resolution and scored
through :class:`Scorer`, i.e. exactly the inference path of the worker.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from tqdm import tqdm

from model.dataset import eval_versions, load_split
from model.degradations import get_protocol
from model.metrics import grades, summary
from model.scorer import Scorer

__all__ = ["LADDERS", "evaluate", "plot_scatter"]

log = logging.getLogger(__name__)

# Severity ladders (mildest first). Off the evaluation grid, inside the trained ranges.
LADDERS: dict[str, tuple[float, ...]] = {
    "jpeg": (85, 75, 65, 55, 45, 35, 25, 15, 5),
    "blur": (0.6, 1.0, 1.4, 1.8, 2.2, 2.6, 3.0, 3.5, 4.0),
}


def _score(scorer: Scorer, images: list[np.ndarray], progress: bool, desc: str) -> np.ndarray:
    step = max(scorer.batch_size, 64)
    parts = []
    for start in tqdm(
        range(0, len(images), step), desc=desc, unit="batch", disable=not progress, leave=False
    ):
        parts.append(scorer.score_frames(images[start : start + step]))
    return np.concatenate(parts) if parts else np.empty(0, np.float32)


def evaluate(
    scorer: Scorer,
    data: Path,
    splits: Path,
    split: str = "test",
    protocol_name: str = "graded",
    levels: int = 3,
    rounds: int = 1000,
    ladders: bool = True,
    good: float = 80.0,
    average: float = 45.0,
    limit: int = 0,
    progress: bool = True,
    precision_check: bool = False,
) -> dict[str, Any]:
    """Every figure of the model card for one split; a JSON-safe dict. ``precision_check``
    also scores every version in both fp32 and bf16 and reports the differences."""
    protocol = get_protocol(protocol_name)
    source = load_split(data, splits, split, scorer.checkpoint.preprocess, limit)
    versions, src = eval_versions(source, protocol, levels=levels)
    pred = _score(scorer, [v.image for v in versions], progress, f"scoring {split}")
    label = np.array([v.label for v in versions])
    kinds = np.array([v.kind for v in versions])
    result: dict[str, Any] = {
        "split": split,
        "protocol": protocol.to_dict(),
        "weights_sha256": scorer.checkpoint.sha256,
        "model_version": scorer.version,
        "precision": "bf16" if scorer.bf16 else "fp32",
        "data_hash": source.data_hash,
        "images": len(source),
        "versions": len(versions),
        "thresholds": {"good": good, "average": average},
        "metrics": summary(pred, label, kinds, src, good, average, rounds=rounds),
    }
    clean = pred[kinds == "original"]
    result["clean"] = {
        "n": int(clean.size),
        "graded_good": float(np.mean(clean >= good)),
        "mean": float(clean.mean()),
        "min": float(clean.min()),
    }
    if ladders:
        result["ladders"] = _ladders(scorer, source.images, protocol_name, progress)
    if precision_check:
        images = [v.image for v in versions]
        twins = [
            Scorer(scorer.checkpoint, scorer.device, b, scorer.batch_size) for b in (False, True)
        ]
        fp32, bf16 = (_score(t, images, progress, "precision check") for t in twins)
        gap = np.abs(fp32.astype(np.float64) - bf16)
        result["precision_check"] = {
            "n": int(gap.size),
            "max_abs_diff": float(gap.max()),
            "mean_abs_diff": float(gap.mean()),
            "p99_abs_diff": float(np.percentile(gap, 99)),
            "same_grade": float(
                np.mean(grades(fp32, good, average) == grades(bf16, good, average))
            ),
        }
    result["_points"] = {
        "pred": pred.tolist(),
        "label": label.tolist(),
        "kind": kinds.tolist(),
        "severity": [v.severity for v in versions],
    }
    return result


def _ladders(
    scorer: Scorer, images: np.ndarray, protocol_name: str, progress: bool
) -> dict[str, Any]:
    """Per image and degradation, the scores along the ladder; Kendall tau of score against
    severity (sign flipped: +1 = every stronger step scored lower)."""
    protocol = get_protocol(protocol_name)
    out: dict[str, Any] = {}
    for kind, steps in LADDERS.items():
        ladder_images = [protocol.apply(im, kind, s).image for im in images for s in steps]
        scores = _score(scorer, ladder_images, progress, f"{kind} ladder").reshape(
            len(images), len(steps)
        )
        taus = []
        for row in scores:
            tau = stats.kendalltau(np.arange(len(steps)), -row)[0]
            taus.append(0.0 if not np.isfinite(tau) else float(tau))
        strictly = np.all(np.diff(scores, axis=1) < 0, axis=1)
        out[kind] = {
            "severities": list(steps),
            "mean_kendall_tau": float(np.mean(taus)),
            "min_kendall_tau": float(np.min(taus)),
            "strictly_decreasing": float(np.mean(strictly)),
            "mean_scores": [round(float(x), 2) for x in scores.mean(axis=0)],
        }
    out["mean_kendall_tau"] = float(np.mean([out[k]["mean_kendall_tau"] for k in LADDERS]))
    return out


def plot_scatter(result: dict[str, Any], path: Path) -> None:
    """Predicted score against label, one panel per degradation type (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = result["_points"]
    pred, label, kind = np.array(pts["pred"]), np.array(pts["label"]), np.array(pts["kind"])
    kinds = list(dict.fromkeys(kind.tolist()))
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 4.2), squeeze=False)
    for ax, k in zip(axes[0], kinds, strict=True):
        m = kind == k
        ax.scatter(label[m], pred[m], s=8, alpha=0.5)
        ax.plot([0, 100], [0, 100], color="grey", lw=1)
        for y in (result["thresholds"]["good"], result["thresholds"]["average"]):
            ax.axhline(y, color="lightgrey", lw=0.8, ls="--")
        met = result["metrics"].get(k, {})
        rmse, plcc = met.get("rmse"), met.get("plcc")
        title = f"{k} (n={int(m.sum())}) RMSE {rmse:.1f}"
        if plcc is not None:
            title += f", PLCC {plcc:.3f}"
        ax.set_title(title, fontsize=9)
        ax.set_xlim(0, 105)
        ax.set_ylim(0, 105)
        ax.set_xlabel("pseudo-label")
        ax.set_ylabel("predicted score")
    fig.suptitle(
        f"{result['protocol']['name']} protocol, {result['split']} split, model "
        f"{result['model_version']}",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)

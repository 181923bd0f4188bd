"""Evaluation on a split: metrics per degradation type, severity ladders, scatter plot and,
for a model with defect and gate outputs, the defect and gate figures of
:mod:`model.defect_metrics`.

The degraded versions are made from the split's images at the preset resolution and scored
through :class:`Scorer`, i.e. exactly the inference path of the worker (without the file
reading and the crop, which ``usqa evaluate --real`` adds for real files).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from tqdm import tqdm

from model import defect_metrics as dm
from model.dataset import ImageSet, eval_versions, load_split
from model.defects import DEFECTS
from model.geometry import random_geometry
from model.grading import Grading
from model.metrics import bootstrap, grades, summary
from model.protocols import RANGES, DefectProtocol, Degraded, Protocol, get_protocol
from model.scorer import Assessment, Scorer

__all__ = ["DEFECT_LADDERS", "LADDERS", "evaluate", "plot_scatter"]

log = logging.getLogger(__name__)

# Severity ladders (mildest first). Off the evaluation grid, inside the trained ranges.
LADDERS: dict[str, tuple[float, ...]] = {
    "jpeg": (85, 75, 65, 55, 45, 35, 25, 15, 5),
    "blur": (0.6, 1.0, 1.4, 1.8, 2.2, 2.6, 3.0, 3.5, 4.0),
}
# Per defect (mildest first), all above the defect's invisible threshold.
DEFECT_LADDERS: dict[str, tuple[float, ...]] = {
    "low_gain": (4, 7, 10, 13, 16, 19, 22, 26, 30),
    "high_gain": (4, 7, 10, 13, 16, 19, 22, 26, 30),
    "low_contrast": (8, 14, 20, 26, 32, 38, 44, 52, 60),
    "noise": (4, 6.5, 9, 11.5, 14, 16.5, 19, 22.5, 26),
    "depth_attenuation": (2.5, 4, 6, 8, 10, 12.5, 15, 18, 22),
    "shadowing": (0.08, 0.15, 0.22, 0.3, 0.38, 0.46, 0.55, 0.65, 0.75),
    "no_signal": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.85, 1.0),
    "blur": LADDERS["blur"],
    "compression": LADDERS["jpeg"],
    "dead_elements": (0.6, 1.2, 2, 3, 4, 5.5, 7, 8.5, 10),
}


def _assess(scorer: Scorer, images: list[np.ndarray], progress: bool, desc: str) -> Assessment:
    step = max(scorer.batch_size, 64)
    parts = []
    for start in tqdm(
        range(0, len(images), step), desc=desc, unit="batch", disable=not progress, leave=False
    ):
        parts.append(scorer.assess_images(images[start : start + step]))
    return Assessment.concat(parts) if parts else scorer.assess_images([])


def _score(scorer: Scorer, images: list[np.ndarray], progress: bool, desc: str) -> np.ndarray:
    return _assess(scorer, images, progress, desc).scores


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
    defect_threshold: float = 0.5,
    gate_threshold: float = 0.5,
    nonus_per_category: int = 50,
) -> dict[str, Any]:
    """Every figure of the model card for one split; a JSON-safe dict. ``precision_check``
    also scores every version in both fp32 and bf16 and reports the differences. With the
    ``defects`` protocol (and a model that names defects) the defect, false-alarm and gate
    figures are added; ``nonus_per_category`` held-out non-ultrasound images per category
    measure the gate (0: not measured)."""
    protocol = get_protocol(protocol_name)
    grading = Grading(
        good, average, defect_threshold=defect_threshold, not_ultrasound_threshold=gate_threshold
    )
    source = load_split(data, splits, split, scorer.checkpoint.preprocess, limit)
    versions, src = eval_versions(source, protocol, levels=levels)
    result_all = _assess(scorer, [v.image for v in versions], progress, f"scoring {split}")
    pred = result_all.scores
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
        "thresholds": {
            "good": good,
            "average": average,
            "defect": defect_threshold,
            "not_ultrasound": gate_threshold,
        },
        "metrics": summary(pred, label, kinds, src, good, average, rounds=rounds),
    }
    result["clean"] = _clean_figures(pred[kinds == "original"], good)
    if isinstance(protocol, DefectProtocol):
        result.update(
            _defect_figures(
                scorer, grading, versions, src, result_all, rounds, nonus_per_category, progress
            )
        )
    if ladders:
        if isinstance(protocol, DefectProtocol):
            result["ladders"] = _defect_ladders(scorer, grading, source, protocol, rounds, progress)
        else:
            result["ladders"] = _ladders(scorer, source.images, protocol, progress)
    if precision_check:
        images = [v.image for v in versions]
        result["precision_check"] = _precision_check(scorer, images, good, average, progress)
    result["_points"] = {
        "pred": pred.tolist(),
        "label": label.tolist(),
        "kind": kinds.tolist(),
        "severity": [v.severity for v in versions],
    }
    return result


def _clean_figures(clean: np.ndarray, good: float) -> dict[str, Any]:
    """How the undamaged originals score: their count, share graded good, mean and minimum."""
    return {
        "n": int(clean.size),
        "graded_good": float(np.mean(clean >= good)),
        "mean": float(clean.mean()),
        "min": float(clean.min()),
    }


def _precision_check(
    scorer: Scorer, images: list[np.ndarray], good: float, average: float, progress: bool
) -> dict[str, Any]:
    """Score ``images`` in fp32 and in bf16 and report how far the two scores and grades differ."""
    twins = [Scorer(scorer.checkpoint, scorer.device, b, scorer.batch_size) for b in (False, True)]
    fp32, bf16 = (_score(t, images, progress, "precision check") for t in twins)
    gap = np.abs(fp32.astype(np.float64) - bf16)
    return {
        "n": int(gap.size),
        "max_abs_diff": float(gap.max()),
        "mean_abs_diff": float(gap.mean()),
        "p99_abs_diff": float(np.percentile(gap, 99)),
        "same_grade": float(np.mean(grades(fp32, good, average) == grades(bf16, good, average))),
    }


def _defect_figures(
    scorer: Scorer,
    grading: Grading,
    versions: list[Degraded],
    src: np.ndarray,
    assessed: Assessment,
    rounds: int,
    nonus_per_category: int,
    progress: bool,
) -> dict[str, Any]:
    """Identification, precision/recall, confusion, false alarms and the gate."""
    out: dict[str, Any] = {}
    names = scorer.defect_names
    threshold = grading.defect_threshold
    kinds = np.array([v.kind for v in versions])
    if assessed.defects is not None and names == DEFECTS:
        probs = assessed.defects
        targets = np.array([v.targets for v in versions], dtype=np.float64)
        single = np.array([len(v.defects) == 1 for v in versions])
        upper = np.array(
            [
                single[i] and dm.upper_half(v.defects[0][0], v.defects[0][1], RANGES)
                for i, v in enumerate(versions)
            ]
        )
        applied = [v.defects[0][0] for v, u in zip(versions, upper, strict=True) if u]
        out["identification"] = {
            "top1_upper_half": dm.top1(probs[upper], applied, names, src[upper], rounds),
            "precision_recall": dm.precision_recall(probs, targets, names, threshold, src, rounds),
            "confusion_upper_half": dm.confusion_matrix(
                probs[upper | (kinds == "original")],
                [
                    v.defects[0][0] if v.defects else None
                    for v, m in zip(versions, upper | (kinds == "original"), strict=True)
                    if m
                ],
                names,
                threshold,
            ),
        }
        alarms = {}
        for group, mask in (
            ("clean", kinds == "original"),
            ("clean_fan", np.isin(kinds, ["clean_curved", "clean_sector"])),
        ):
            figures = dm.clean_figures(
                probs[mask], assessed.scores[mask], threshold, grading.good, src[mask], rounds
            )
            figures["first_defects"] = {
                names[int(k)]: n for k, n in figures["first_defects"].items()
            }
            alarms[group] = figures
        out["false_alarms"] = alarms
    else:
        out["identification"] = None
    if assessed.not_ultrasound is not None:
        gate = assessed.not_ultrasound
        skipped = gate > grading.not_ultrasound_threshold
        out["gate"] = {
            "busi_versions_skipped": int(skipped.sum()),
            "busi_versions": int(skipped.size),
            "busi_clean_skipped": int(skipped[kinds == "original"].sum()),
            "busi_max_probability": float(gate.max()),
        }
        if nonus_per_category > 0:
            from model.nonultrasound import heldout_set

            held = heldout_set(nonus_per_category)
            prep = scorer.checkpoint.preprocess
            res = _assess(scorer, [prep.image(h.image) for h in held], progress, "not ultrasound")
            assert res.not_ultrasound is not None
            out["gate"]["heldout"] = dm.gate_figures(
                res.not_ultrasound,
                grading.not_ultrasound_threshold,
                [h.category for h in held],
                rounds,
            )
            out["gate"]["heldout_sources"] = sorted({h.source for h in held})
    return out


def _image_share(values: np.ndarray, rounds: int) -> dict[str, Any]:
    """A mean over images with a bootstrap interval over images."""
    values = np.asarray(values, dtype=np.float64)
    ids = np.arange(values.size)
    ci = (
        bootstrap(ids, lambda idx: {"v": float(values[idx].mean())}, rounds=rounds)["v"]
        if rounds > 0 and values.size
        else None
    )
    return {"mean": float(values.mean()) if values.size else None, "ci": ci}


def _defect_ladders(
    scorer: Scorer,
    grading: Grading,
    source: ImageSet,
    protocol: DefectProtocol,
    rounds: int,
    progress: bool,
    seed: int = 777,
) -> dict[str, Any]:
    """Per image and defect, the scores along the defect's ladder (a fixed layout and
    field of view per image and defect, drawn among linear, curved and sector): Kendall
    tau of score against severity, strictly decreasing, the strongest step graded poor."""
    out: dict[str, Any] = {}
    h, w = source.images.shape[1:]
    for d, (name, steps) in enumerate(DEFECT_LADDERS.items()):
        images = []
        for i, image in enumerate(source.images):
            rng = np.random.default_rng([seed, i, d])
            geometry = random_geometry(rng, h, w, protocol.geometry_weights)
            for step in steps:
                v = protocol.make(
                    image,
                    [(name, float(step))],
                    geometry,
                    layout_seed=[seed, i, d],
                    blur_kind="gaussian" if name == "blur" else None,
                )
                images.append(v.image)
        res = _assess(scorer, images, progress, f"{name} ladder")
        scores = res.scores.reshape(len(source), len(steps))
        taus = np.array([_tau(row) for row in scores])
        strictly = np.all(np.diff(scores, axis=1) < 0, axis=1)
        last = np.arange(len(steps) - 1, scores.size, len(steps))
        firsts = _first_defects(res, grading.defect_threshold)
        poor = np.array([grading.grade(float(res.scores[k]), firsts[k]) == "poor" for k in last])
        named = np.array([firsts[k] == name for k in last])
        out[name] = {
            "severities": [float(x) for x in steps],
            "mean_kendall_tau": _image_share(taus, rounds),
            "min_kendall_tau": float(taus.min()),
            "strictly_decreasing": _image_share(strictly, rounds),
            "strongest_graded_poor": _image_share(poor, rounds),
            "strongest_named_first": _image_share(named, rounds)
            if res.defects is not None
            else None,
            "mean_scores": [round(float(x), 2) for x in scores.mean(axis=0)],
        }
    out["mean_kendall_tau"] = float(
        np.mean([out[k]["mean_kendall_tau"]["mean"] for k in DEFECT_LADDERS])
    )
    return out


def _first_defects(res: Assessment, threshold: float) -> list[str | None]:
    if res.defects is None:
        return [None] * len(res)
    from model.defects import frame_first_defects

    return frame_first_defects(res.defects, threshold, res.defect_names)


def _tau(row: np.ndarray) -> float:
    tau = stats.kendalltau(np.arange(len(row)), -row)[0]
    return 0.0 if not np.isfinite(tau) else float(tau)


def _ladders(
    scorer: Scorer, images: np.ndarray, protocol: Protocol, progress: bool
) -> dict[str, Any]:
    """Per image and degradation, the scores along the ladder; Kendall tau of score against
    severity (sign flipped: +1 = every stronger step scored lower)."""
    out: dict[str, Any] = {}
    for kind, steps in LADDERS.items():
        ladder_images = [protocol.apply(im, kind, s).image for im in images for s in steps]
        scores = _score(scorer, ladder_images, progress, f"{kind} ladder").reshape(
            len(images), len(steps)
        )
        taus = [_tau(row) for row in scores]
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

"""``usqa evaluate``: the model card's figures for one split of a labelled image set."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from worker.settings import Settings

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate",
        help="measure a model on degraded copies of a data split (for model maintainers)",
        description="Score degraded copies of every image of one split and report MSE, RMSE, "
        "MAE, PLCC (raw and after a 4-parameter logistic), SROCC, KROCC and grade accuracy, "
        "per degradation type and overall, with bootstrap 95%% intervals over source images.",
    )
    p.add_argument("--data", type=Path, required=True, help="folder holding the images")
    p.add_argument("--splits", type=Path, required=True, help="CSV with columns path and split")
    p.add_argument(
        "--weights",
        dest="weights",
        type=Path,
        default=None,
        help="checkpoint to evaluate (default: USQA_WEIGHTS or the shipped model)",
    )
    p.add_argument(
        "--split",
        choices=["train", "val", "test"],
        default="test",
        help="split to evaluate (default test)",
    )
    p.add_argument(
        "--protocol",
        choices=["paper", "graded"],
        default="graded",
        help="pseudo-label protocol of the test set (default graded)",
    )
    p.add_argument(
        "--levels",
        type=int,
        default=3,
        help="graded: severities per degradation per image (default 3)",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        help="bootstrap rounds for the 95%% intervals; 0 = none (default 1000)",
    )
    p.add_argument(
        "--no-ladders",
        action="store_true",
        help="skip the severity ladders (Kendall tau of scores along a ladder)",
    )
    p.add_argument("--limit", type=int, default=0, help="only the first N images (smoke tests)")
    p.add_argument(
        "--precision",
        dest="precision",
        choices=["auto", "fp32", "bf16"],
        default=None,
        help="inference precision (USQA_PRECISION)",
    )
    p.add_argument(
        "--precision-check",
        action="store_true",
        help="also score every version in fp32 and bf16 and report the difference",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="write a predicted-vs-label scatter plot per type to this PNG",
    )
    return p


def _fmt(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(result: dict[str, Any]) -> str:
    lines = [
        f"model {result['model_version']} ({result['precision']}), split {result['split']}, "
        f"protocol {result['protocol']['name']}: {result['images']} images, "
        f"{result['versions']} versions",
        f"{'group':<9} {'n':>5} {'MSE':>8} {'RMSE':>6} {'MAE':>6} {'PLCC':>7} {'PLCC-l':>7} "
        f"{'SROCC':>7} {'KROCC':>7} {'grade':>6}",
    ]
    for name, m in result["metrics"].items():
        lines.append(
            f"{name:<9} {m['n']:>5} {m['mse']:>8.2f} {m['rmse']:>6.2f} {m['mae']:>6.2f} "
            f"{_fmt(m['plcc']):>7} {_fmt(m['plcc_logistic']):>7} {_fmt(m['srocc']):>7} "
            f"{_fmt(m['krocc']):>7} {m['grade_accuracy'] * 100:>5.1f}%"
        )
    overall = result["metrics"]["overall"]
    for key in ("mse", "plcc", "srocc", "grade_accuracy"):
        ci = overall["ci"].get(key)
        if ci:
            lines.append(f"overall {key} 95% interval: [{ci[0]:.4f}, {ci[1]:.4f}]")
    lines.append(
        "grade confusion (rows: label good/average/poor, columns: predicted): "
        f"{overall['confusion']}"
    )
    clean = result["clean"]
    lines.append(
        f"clean images graded good: {clean['graded_good'] * 100:.1f}% "
        f"(mean score {clean['mean']:.1f}, lowest {clean['min']:.1f})"
    )
    if "ladders" in result:
        lad = result["ladders"]
        for kind in ("jpeg", "blur"):
            lines.append(
                f"{kind} ladder {lad[kind]['severities']}: mean Kendall tau "
                f"{lad[kind]['mean_kendall_tau']:.3f}, strictly decreasing "
                f"{lad[kind]['strictly_decreasing'] * 100:.1f}%, mean scores "
                f"{lad[kind]['mean_scores']}"
            )
        lines.append(f"mean Kendall tau over all ladders: {lad['mean_kendall_tau']:.3f}")
    if "precision_check" in result:
        pc = result["precision_check"]
        lines.append(
            f"bf16 vs fp32 on {pc['n']} images: max |diff| {pc['max_abs_diff']:.3f}, mean "
            f"{pc['mean_abs_diff']:.3f}, 99th percentile {pc['p99_abs_diff']:.3f} points; same "
            f"grade {pc['same_grade'] * 100:.2f}%"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from model.evaluation import evaluate, plot_scatter
    from model.scorer import Scorer

    scorer = Scorer.from_settings(settings)
    result = evaluate(
        scorer,
        args.data,
        args.splits,
        split=args.split,
        protocol_name=args.protocol,
        levels=args.levels,
        rounds=args.bootstrap,
        ladders=not args.no_ladders,
        good=settings.good_threshold,
        average=settings.average_threshold,
        limit=args.limit,
        progress=not args.json and sys.stderr.isatty(),
        precision_check=args.precision_check,
    )
    if args.plot is not None:
        plot_scatter(result, args.plot)
    result.pop("_points")
    if args.json:
        print(json.dumps(result))
    else:
        print(_table(result))
    return 0

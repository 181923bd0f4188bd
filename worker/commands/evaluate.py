"""``usqa evaluate``: the model card's figures for one split of a labelled image set, or
(``--reviews``) how well the model agrees with the reviewers' ratings in the ledger.

The ``--reviews`` path reads the ledger only: it never imports torch or loads a model.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from db.qa.agreement import BY_CHOICES
from worker.commands.options import add_database_option, iso_day
from worker.settings import Settings

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate",
        help="measure a model on a data split, or against the reviewers' ratings (--reviews)",
        description="Score degraded copies of every image of one split and report MSE, RMSE, "
        "MAE, PLCC (raw and after a 4-parameter logistic), SROCC, KROCC and grade accuracy, "
        "per degradation type and overall, with bootstrap 95%% intervals over source images "
        "(needs --data and --splits). With --reviews instead: how well each model version "
        "agrees with the reviewers' ratings in the ledger (grade agreement, linear-weighted "
        "kappa, Spearman of score with grade, per-defect precision and recall, and agreement "
        "between reviewers), per reviewer and per --by group, with bootstrap 95%% intervals "
        "over scans; no model is loaded.",
        epilog="Exit codes: 0 done; 1 --reviews found no ratings; 2 usage or configuration.",
    )
    p.add_argument("--data", type=Path, default=None, help="folder holding the images")
    p.add_argument("--splits", type=Path, default=None, help="CSV with columns path and split")
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
        choices=["paper", "graded", "defects"],
        default="defects",
        help="pseudo-label protocol of the test set: defects (every defect, the shipped "
        "model's protocol), graded (JPEG and blur only) or paper (default defects)",
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
    p.add_argument(
        "--non-ultrasound",
        dest="nonus",
        type=int,
        default=50,
        metavar="N",
        help="defects: held-out non-ultrasound images per category for the gate's accuracy "
        "(default 50; 0 = skip)",
    )
    p.add_argument(
        "--real",
        nargs="*",
        type=Path,
        default=None,
        metavar="FILE",
        help="also score these real files through the worker's reading path (crop included) "
        "and list what the model says; no FILE: pydicom's bundled ultrasound examples",
    )
    p.add_argument(
        "--previews",
        type=Path,
        default=None,
        metavar="DIR",
        help="with --real: write the frame the model scored for each file, with its result, "
        "as DIR/<file>.png",
    )
    p.add_argument(
        "--export-examples",
        type=Path,
        default=None,
        metavar="DIR",
        help="write PNG copies of the first --limit images (default 3) of the split: clean, and "
        "with each defect at three quarters of its range, for `usqa score` (then exit)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="write a predicted-vs-label scatter plot per type to this PNG",
    )
    _add_review_options(p)
    return p


def _add_review_options(p: argparse.ArgumentParser) -> None:
    reviews = p.add_argument_group("agreement with reviewers (--reviews)")
    reviews.add_argument(
        "--reviews",
        action="store_true",
        help="measure the model against the reviewers' ratings in the ledger (no --data)",
    )
    reviews.add_argument(
        "--model-version",
        metavar="VERSION",
        default=None,
        help="only this model version (default: every version, each on its own)",
    )
    reviews.add_argument(
        "--since", type=iso_day, metavar="YYYY-MM-DD", help="first day of ratings (UTC)"
    )
    reviews.add_argument(
        "--until", type=iso_day, metavar="YYYY-MM-DD", help="last day of ratings, included (UTC)"
    )
    reviews.add_argument(
        "--by",
        choices=BY_CHOICES,
        default=None,
        help="also per station, operator or transducer (default station); reviewers are "
        "always shown",
    )
    add_database_option(p)


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
        lines.extend(_ladder_lines(result["ladders"]))
    lines.extend(_defect_lines(result))
    if "precision_check" in result:
        pc = result["precision_check"]
        lines.append(
            f"bf16 vs fp32 on {pc['n']} images: max |diff| {pc['max_abs_diff']:.3f}, mean "
            f"{pc['mean_abs_diff']:.3f}, 99th percentile {pc['p99_abs_diff']:.3f} points; same "
            f"grade {pc['same_grade'] * 100:.2f}%"
        )
    return "\n".join(lines)


def export_examples(data: Path, splits: Path, split: str, limit: int, out: Path) -> list[Path]:
    """Degraded PNG copies of the first ``limit`` images of ``split``: the clean image and
    each defect at three quarters of its severity range, on the image's own (linear) view."""
    import numpy as np
    from PIL import Image

    from model.dataset import load_split
    from model.defects import DEFECTS
    from model.geometry import linear
    from model.preprocess import Preprocess
    from model.protocols import RANGES, DefectProtocol

    protocol = DefectProtocol()
    images = load_split(data, splits, split, Preprocess(), limit)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (rel, image) in enumerate(zip(images.paths, images.images, strict=True)):
        stem = Path(rel).stem.replace(" ", "_").replace("(", "").replace(")", "")
        cases: list[tuple[str, float]] = [("clean", 0.0)]
        for name in DEFECTS:
            mild, strong = RANGES[name]
            cases.append((name, mild + 0.75 * (strong - mild)))
        for name, severity in cases:
            defects = [] if name == "clean" else [(name, severity)]
            version = protocol.make(image, defects, linear(*image.shape), layout_seed=[i, 99])
            path = out / f"{stem}-{name}-{severity:g}.png"
            Image.fromarray(np.asarray(version.image)).save(path)
            written.append(path)
    return written


def _ci(figure: dict[str, Any] | None, key: str = "share") -> str:
    if not figure or figure.get(key) is None:
        return "-"
    ci = figure.get("ci")
    text = f"{figure[key] * 100:.1f}%"
    return text + (f" [{ci[0] * 100:.1f}, {ci[1] * 100:.1f}]" if ci else "")


def _ladder_lines(lad: dict[str, Any]) -> list[str]:
    lines = []
    for kind, row in lad.items():
        if kind == "mean_kendall_tau":
            continue
        tau = row["mean_kendall_tau"]
        if isinstance(tau, dict):  # defects protocol: figures with intervals
            lines.append(
                f"{kind} ladder: mean Kendall tau {tau['mean']:.3f}, strictly decreasing "
                f"{_ci(row['strictly_decreasing'], 'mean')}, strongest graded poor "
                f"{_ci(row['strongest_graded_poor'], 'mean')}, mean scores {row['mean_scores']}"
            )
        else:
            lines.append(
                f"{kind} ladder {row['severities']}: mean Kendall tau {tau:.3f}, strictly "
                f"decreasing {row['strictly_decreasing'] * 100:.1f}%, mean scores "
                f"{row['mean_scores']}"
            )
    lines.append(f"mean Kendall tau over all ladders: {lad['mean_kendall_tau']:.3f}")
    return lines


def _defect_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    ident = result.get("identification")
    if ident:
        top = ident["top1_upper_half"]
        lines.append(f"top-1 defect at the upper half of severities: {_ci(top['overall'])}")
        lines.append("  " + ", ".join(f"{k} {_ci(v)}" for k, v in top.items() if k != "overall"))
        lines.append(
            "defect precision / recall (threshold {:g}):".format(result["thresholds"]["defect"])
        )
        for name, pr in ident["precision_recall"].items():
            precision = "-" if pr["precision"] is None else f"{pr['precision'] * 100:.1f}%"
            recall = "-" if pr["recall"] is None else f"{pr['recall'] * 100:.1f}%"
            lines.append(
                f"  {name:<18} precision {precision:>6}  recall {recall:>6}  "
                f"(shows {pr['shows']}, named {pr['named']})"
            )
    for group, fig in (result.get("false_alarms") or {}).items():
        lines.append(
            f"{group}: no defect named {_ci(fig['no_defect'])}, mean score "
            f"{fig['mean_score']:.1f}, graded good {_ci(fig['graded_good'])}, false alarms "
            f"{fig['first_defects'] or 'none'}"
        )
    gate = result.get("gate")
    if gate:
        lines.append(
            f"not ultrasound: {gate['busi_versions_skipped']} of {gate['busi_versions']} BUSI "
            f"versions skipped ({gate['busi_clean_skipped']} clean)"
        )
        if "heldout" in gate:
            lines.append(
                "  held-out non-ultrasound images skipped: "
                + ", ".join(f"{k} {_ci(v)}" for k, v in gate["heldout"].items())
            )
    for row in result.get("real_files") or []:
        defects = ", ".join(f"{d['name']} {d['probability']:.2f}" for d in row["defects"])
        score = "" if row["score"] is None else f"{row['score']:.1f}"
        lines.append(
            f"real file {row['file']}: {row['status']} {score} {row['grade'] or ''} "
            f"{defects or 'no defect'}" + (f" ({row['reason']})" if row["reason"] else "")
        )
    return lines


REVIEW_ONLY = ("model_version", "since", "until", "by")


def _usage(message: str) -> int:
    print(f"usqa evaluate: {message}", file=sys.stderr)
    return 2


def _reviews(args: argparse.Namespace, settings: Settings) -> int:
    """``--reviews``: the agreement tables (or JSON) from the ledger's ratings."""
    import db
    from db.qa.agreement import build_agreement
    from model.defects import DEFECTS  # the vocabulary only: no torch
    from worker.report.agreement_text import agreement_text

    if args.bootstrap < 0:
        return _usage(f"--bootstrap {args.bootstrap}: expected 0 or more rounds")
    if args.since and args.until and args.until < args.since:
        return _usage(f"--until {args.until} is before --since {args.since}")
    since = datetime.combine(args.since, time(), UTC) if args.since else None
    until = datetime.combine(args.until + timedelta(days=1), time(), UTC) if args.until else None
    by = args.by or "station"
    db.require_current(settings.database_url)
    with db.session_scope(settings.database_url, readonly=True) as session:
        report = build_agreement(
            session,
            model_version=args.model_version,
            since=since,
            until=until,
            by=by,
            rounds=args.bootstrap,
            defects=DEFECTS,
        )
    selected = []
    if args.model_version:
        selected.append(f"model {args.model_version}")
    if args.since and args.until:
        selected.append(f"rated {args.since} to {args.until}")
    elif args.since or args.until:
        selected.append(f"rated from {args.since}" if args.since else f"rated up to {args.until}")
    heading = f" ({', '.join(selected)})" if selected else ""
    if report.ratings == 0:
        print(
            f"usqa evaluate: no ratings in the ledger{heading}. Reviewers rate scans on the "
            "review page (usqa serve; docs/reviews.md); only scans with a score count.",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        sys.stdout.write(agreement_text(report, heading=heading))
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.reviews:
        if args.data is not None or args.splits is not None:
            return _usage("--reviews reads the ledger's ratings: leave out --data and --splits")
        return _reviews(args, settings)
    given = [f"--{name.replace('_', '-')}" for name in REVIEW_ONLY if getattr(args, name)]
    if given:
        return _usage(f"{', '.join(given)} only go with --reviews")
    if args.data is None or args.splits is None:
        return _usage(
            "give --data DIR and --splits CSV to measure the model on a data split, or "
            "--reviews to measure it against the reviewers' ratings in the ledger"
        )
    from model.evaluation import evaluate, plot_scatter
    from model.scorer import Scorer

    if args.export_examples is not None:
        written = export_examples(
            args.data, args.splits, args.split, args.limit or 3, args.export_examples
        )
        print(f"wrote {len(written)} files to {args.export_examples}")
        return 0
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
        defect_threshold=settings.defect_threshold,
        gate_threshold=settings.not_ultrasound_threshold,
        nonus_per_category=args.nonus,
    )
    if args.real is not None:
        from worker.commands.evaluate_real import real_files_table

        result["real_files"] = real_files_table(scorer, settings, args.real, args.previews)
    if args.plot is not None:
        plot_scatter(result, args.plot)
    result.pop("_points")
    if args.json:
        print(json.dumps(result))
    else:
        print(_table(result))
    return 0

"""``usqa report``: image quality per station, operator, transducer, manufacturer or body
part, as a terminal table, CSV, JSON or a self-contained HTML file with charts; and drift
alerts for cron or monitoring.

Exit codes: 0 report written (or, with ``--alerts``, no alert); 3 ``--alerts`` found at
least one drift or suspected probe fault; 1 the database could not be read; 2 usage or
configuration problem.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import db
from db.qa import DEFAULT_DAYS, DriftRule, QAReport, build_report, scan_files
from db.qa.equipment import ProbeRule
from db.qa.rows import DEFECT, GROUPINGS
from db.session import shown_url
from worker.commands.options import add_database_option, iso_day
from worker.report.defect_text import equipment_text
from worker.report.text import alerts_text, report_csv, report_text
from worker.settings import Settings

__all__ = ["ALERT_DIMENSIONS", "EXIT_ALERTS", "add_parser", "run"]

EXIT_ALERTS = 3
# Drift is always checked for these, and for the --by grouping.
ALERT_DIMENSIONS = ("station", "transducer", "operator")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of 1 or more")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of 0 or more")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report",
        help="image quality per station, operator or probe; charts; drift alerts",
        description="Summarise the scores in the database: scans, mean and median score and "
        "the shares of good, average and poor scans per station, operator, transducer, "
        "manufacturer or body part, lowest first. --html writes one file with charts that "
        "opens without a network; --csv and --json give the same figures to other tools. "
        f"Without dates, the report covers the last {DEFAULT_DAYS} days that have scans. "
        "Only the model version that scored the most recent scan is included unless "
        "--model-version says otherwise.",
        epilog="Drift alerts compare each station, transducer and operator (and the --by "
        "grouping) over the last --recent-days with its own --baseline-days before: a drop "
        "of at least --drop points in mean score (Welch's t-test) or a rise of at least "
        "--poor-rise points in the poor share (Fisher's exact test), with p below --p-value "
        "divided by the number of tests (Bonferroni) and at least --min-scans scans in each "
        "window; the same for a rise of at least --defect-rise points in the share of one "
        "first defect (Fisher's exact test, same correction). A probe (station and "
        "transducer) whose scans list dead_elements on --probe-min-scans scans over "
        "--probe-min-days days, at least --probe-min-share percent of its scans since, within "
        "--probe-days days, is reported as a suspected probe fault. Exit codes: 0 done; "
        "3 --alerts found drift or a probe fault; 1 database error; 2 usage.",
    )
    when = p.add_argument_group("period and grouping")
    when.add_argument("--since", type=iso_day, metavar="YYYY-MM-DD", help="first day included")
    when.add_argument(
        "--until",
        type=iso_day,
        metavar="YYYY-MM-DD",
        help="last day included (default: the latest day with scans, up to today)",
    )
    when.add_argument(
        "--days",
        type=_positive_int,
        default=DEFAULT_DAYS,
        metavar="N",
        help=f"length of the period when --since is not given (default {DEFAULT_DAYS})",
    )
    when.add_argument(
        "--by",
        choices=list(GROUPINGS),
        default="station",
        help="group scans by this (default station); 'defect' groups by first defect",
    )
    when.add_argument(
        "--model-version",
        metavar="VERSION",
        help="only scans scored by this model version, or 'all' to mix versions "
        "(default: the version that scored the most recent scan)",
    )
    out = p.add_argument_group("output")
    out.add_argument("--html", type=Path, metavar="FILE", help="write the report with charts")
    out.add_argument(
        "--thumbnails",
        action="store_true",
        help="with --html: show a small image of each lowest-scoring scan and beside it "
        "where the evidence for its score and first defect lies (saliency, computed now). "
        "Images can show burned-in patient details: share such a report as you would the "
        "images",
    )
    out.add_argument("--csv", type=Path, metavar="FILE", help="write one row per group")
    out.add_argument("--json", action="store_true", help="print the report as one JSON object")
    out.add_argument(
        "--worst",
        type=_positive_int,
        default=20,
        metavar="N",
        help="lowest-scoring scans to list (default 20)",
    )
    _add_drift_options(p)
    _add_probe_options(p)
    add_database_option(p)
    return p


def _add_drift_options(p: argparse.ArgumentParser) -> None:
    drift = p.add_argument_group("drift alerts")
    drift.add_argument(
        "--alerts",
        action="store_true",
        help="print only the drift alerts; exit 3 when there is any (for cron or monitoring)",
    )
    default = DriftRule()
    drift.add_argument(
        "--recent-days",
        type=_positive_int,
        default=default.recent_days,
        metavar="N",
        help=f"recent window (default {default.recent_days} days)",
    )
    drift.add_argument(
        "--baseline-days",
        type=_positive_int,
        default=default.baseline_days,
        metavar="N",
        help=f"baseline before it (default {default.baseline_days} days)",
    )
    drift.add_argument(
        "--min-scans",
        type=_positive_int,
        default=default.min_scans,
        metavar="N",
        help=f"scans needed in each window (default {default.min_scans})",
    )
    drift.add_argument(
        "--drop",
        type=_number,
        default=default.mean_drop,
        metavar="POINTS",
        help=f"smallest mean-score drop that counts (default {default.mean_drop:g})",
    )
    drift.add_argument(
        "--poor-rise",
        type=_number,
        default=default.poor_rise * 100,
        metavar="POINTS",
        help="smallest rise of the poor share, in percentage points, that counts "
        f"(default {default.poor_rise * 100:g})",
    )
    drift.add_argument(
        "--defect-rise",
        type=_number,
        default=default.defect_rise * 100,
        metavar="POINTS",
        help="smallest rise of one first defect's share, in percentage points, that counts "
        f"(default {default.defect_rise * 100:g})",
    )
    drift.add_argument(
        "--p-value",
        type=_number,
        default=default.p_value,
        metavar="P",
        help=f"family-wise significance level (default {default.p_value:g})",
    )


def _add_probe_options(p: argparse.ArgumentParser) -> None:
    probe = p.add_argument_group("suspected probe faults (dead_elements on one probe)")
    default = ProbeRule()
    probe.add_argument(
        "--probe-min-scans",
        type=_positive_int,
        default=default.min_scans,
        metavar="N",
        help=f"scans listing the defect (default {default.min_scans})",
    )
    probe.add_argument(
        "--probe-min-days",
        type=_positive_int,
        default=default.min_days,
        metavar="N",
        help=f"distinct days it was seen on (default {default.min_days})",
    )
    probe.add_argument(
        "--probe-min-share",
        type=_number,
        default=default.min_share * 100,
        metavar="PERCENT",
        help="share of the probe's scans since it was first seen "
        f"(default {default.min_share * 100:g})",
    )
    probe.add_argument(
        "--probe-days",
        type=_positive_int,
        default=default.lookback_days,
        metavar="N",
        help=f"days looked back (default {default.lookback_days})",
    )


def _probe_rule(args: argparse.Namespace) -> ProbeRule:
    return ProbeRule(
        min_scans=args.probe_min_scans,
        min_days=args.probe_min_days,
        min_share=args.probe_min_share / 100.0,
        lookback_days=args.probe_days,
    )


def _rule(args: argparse.Namespace) -> DriftRule:
    return DriftRule(
        recent_days=args.recent_days,
        baseline_days=args.baseline_days,
        min_scans=max(2, args.min_scans),
        mean_drop=args.drop,
        poor_rise=args.poor_rise / 100.0,
        defect_rise=args.defect_rise / 100.0,
        p_value=args.p_value,
    )


def _write(path: Path, content: str) -> None:
    try:
        path.write_text(content, encoding="utf-8")
    except OSError as exc:
        raise OSError(
            f"cannot write {path}: {exc.strerror or exc}; choose a folder that exists and "
            "that you may write to"
        ) from exc


def _html(report: QAReport, args: argparse.Namespace, settings: Settings) -> str:
    from dicom_io import ReadOptions
    from worker.report.charts import Thresholds
    from worker.report.page import render_html

    thumbs = None
    if args.thumbnails and report.worst:
        from worker.report.overlays import overlay_maker
        from worker.report.thumbnails import thumbnails

        with db.session_scope(settings.database_url, readonly=True) as session:
            files = scan_files(session, [w.scan_id for w in report.worst])
        explain, why_not = overlay_maker(settings)  # saliency, computed now (issue 17)
        thumbs = thumbnails(
            files, ReadOptions.from_settings(settings), explain or (lambda _f: (None, why_not))
        )
    elif args.thumbnails:
        thumbs = {}
    return render_html(
        report,
        thresholds=Thresholds(settings.good_threshold, settings.average_threshold),
        thumbnails=thumbs,
        database=shown_url(settings.database_url),
    )


def _alerts(report: QAReport, *, as_json: bool) -> int:
    """``--alerts``: the drift alerts, then the suspected probe faults (listed apart: a
    probe needs service, not training); exit 3 when there is any."""
    equipment = report.equipment
    if as_json:
        payload = report.drift.to_dict() if report.drift else {"alerts": []}
        payload["equipment"] = equipment.to_dict() if equipment else {"alerts": []}
        print(json.dumps({**payload, "no_data": report.no_data_reason()}))
    elif report.drift is None:
        print(f"No drift alerts: {report.no_data_reason()}")
    else:
        print(alerts_text(report.drift.alerts))
        probes = equipment_text(equipment)
        if probes:
            print(probes)
    return EXIT_ALERTS if report.alert_count else 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        rule, probe_rule = _rule(args), _probe_rule(args)
    except ValueError as exc:
        print(f"usqa report: {exc}", file=sys.stderr)
        return 2
    if args.thumbnails and args.html is None:
        print("usqa report: --thumbnails needs --html FILE", file=sys.stderr)
        return 2
    since = args.since
    if since is None and args.until is not None:
        since = date.fromordinal(args.until.toordinal() - args.days + 1)
    dims = [d for d in dict.fromkeys([*ALERT_DIMENSIONS, args.by]) if d != DEFECT]
    url = settings.database_url
    db.require_current(url)
    now = datetime.now(UTC)
    try:
        with db.session_scope(url, readonly=True) as session:
            report = build_report(
                session,
                dimension=args.by,
                since=since,
                until=args.until,
                model_version=args.model_version,
                rule=rule,
                probe_rule=probe_rule,
                alert_dimensions=dims,
                worst=args.worst,
                now=now,
                default_days=args.days,
            )
    except ValueError as exc:
        print(f"usqa report: {exc}", file=sys.stderr)
        return 2

    if args.alerts:
        return _alerts(report, as_json=args.json)

    written = []
    try:
        if args.csv is not None:
            _write(args.csv, report_csv(report))
            written.append(args.csv)
        if args.html is not None:
            _write(args.html, _html(report, args, settings))
            written.append(args.html)
    except OSError as exc:
        print(f"usqa report: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        sys.stdout.write(report_text(report))
        for path in written:
            print(f"Wrote {path} ({path.stat().st_size / 1024:.0f} KiB).")
    return 0

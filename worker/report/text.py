"""``usqa report`` as text: the terminal table, the drift alerts and the CSV file.

Group names come from file headers (station, operator, transducer...), written by whoever
set up the scanner, so they are treated as hostile text: in the terminal, control
characters are shown escaped (``\\x1b``), never sent raw; in the CSV file, a text cell that
a spreadsheet would run as a formula (it starts with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return) gets a leading apostrophe, the usual neutralisation (OWASP "CSV
injection"): Excel and LibreOffice then show the text as typed.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from typing import Any

from db.qa.drift import DriftAlert
from db.qa.figures import GroupFigures
from db.qa.report import QAReport
from worker.report.defect_text import (
    defect_csv_columns,
    defect_csv_values,
    defect_lines,
    equipment_text,
)

__all__ = [
    "CSV_COLUMNS",
    "DIMENSION_LABELS",
    "alerts_text",
    "csv_cell",
    "group_label",
    "report_csv",
    "report_text",
    "shown_text",
    "table",
]

DIMENSION_LABELS = {
    "station": "Station",
    "operator": "Operator",
    "transducer": "Transducer",
    "manufacturer": "Manufacturer",
    "body_part": "Body part",
    "defect": "First defect",
}
NOT_RECORDED = "(not recorded)"

CSV_COLUMNS = (
    "dimension",
    "group",
    "since",
    "until",
    "model_version",
    "scans",
    "mean",
    "ci_low",
    "ci_high",
    "sd",
    "median",
    "p5",
    "q1",
    "q3",
    "p95",
    "min",
    "max",
    "good",
    "average",
    "poor",
    "good_share",
    "average_share",
    "poor_share",
    "poor_share_ci_low",
    "poor_share_ci_high",
    "received",
    "failed",
    "skipped",
    "pending",
)


# C0 and C1 controls, DEL, and the Unicode line and paragraph separators and the bidi
# overrides that could make a terminal line or a chart label lie about what it says.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# What spreadsheets (Excel, LibreOffice, Google Sheets) take as the start of a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def shown_text(text: str) -> str:
    """``text`` on one line with every control character written as an escape
    (``\\x1b``, ``\\n``), for terminals and charts."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def group_label(group: str | None) -> str:
    return NOT_RECORDED if group is None else group


def csv_cell(value: object) -> object:
    """A value for one CSV cell: text that a spreadsheet would run as a formula gets a
    leading apostrophe; numbers (and everything else) pass unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _row(label: str, g: GroupFigures) -> list[str]:
    s = g.stats
    ci = "-" if s.ci_low is None or s.ci_high is None else f"{s.ci_low:.1f}-{s.ci_high:.1f}"
    return [
        label,
        str(s.scans),
        _num(s.mean),
        ci,
        _num(s.median),
        _pct(s.share("good")),
        _pct(s.share("average")),
        _pct(s.share("poor")),
        str(g.failed),
        str(g.skipped),
    ]


def table(
    header: Sequence[str], rows: Sequence[Sequence[str]], left: Sequence[int] = (0,)
) -> list[str]:
    """Aligned columns: those in ``left`` left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for r in [header, *rows]:
        cells = [
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _heading(report: QAReport) -> str:
    label = DIMENSION_LABELS[report.dimension].lower()
    model = report.model_version or "all model versions"
    if report.period is None:
        return f"Image quality report by {label}"
    return (
        f"Image quality report, {report.period} ({report.period.days} days), by {label}, "
        f"model {model}"
    )


def report_text(report: QAReport, *, max_groups: int = 50) -> str:
    """The terminal report: headline figures, then one line per group, worst first."""
    lines = [_heading(report)]
    reason = report.no_data_reason()
    if reason is not None:
        lines.append(f"No data: {reason}")
        return "\n".join(lines) + "\n"
    o = report.overall
    s = o.stats
    lines.append(
        f"{s.scans} scans scored: mean score {_num(s.mean)}, median {_num(s.median)}; "
        f"good {_pct(s.share('good'))}, average {_pct(s.share('average'))}, "
        f"poor {_pct(s.share('poor'))}. Also received: {o.failed} failed, "
        f"{o.skipped} skipped, {o.pending} waiting."
    )
    if s.scans < 2:
        lines.append("Only one scored scan in this period: too few for intervals or trends.")
    excluded = report.excluded_versions
    if excluded:
        lines.append(
            f"Not included: {sum(excluded.values())} scans scored by other model versions "
            f"({', '.join(excluded)}); use --model-version all to mix them."
        )
    header = [
        DIMENSION_LABELS[report.dimension],
        "Scans",
        "Mean",
        "95% CI",
        "Median",
        "Good",
        "Average",
        "Poor",
        "Failed",
        "Skipped",
    ]
    shown = report.groups[:max_groups]
    rows = [_row(shown_text(group_label(g.group)), g) for g in shown]
    rows.append(_row("All", o))
    lines.append("")
    lines.extend(table(header, rows))
    if len(report.groups) > max_groups:
        lines.append(f"({len(report.groups) - max_groups} more groups: use --csv for all)")
    names = {g.group: shown_text(group_label(g.group)) for g in shown}
    lines.extend(defect_lines(report, DIMENSION_LABELS[report.dimension], names))
    if report.drift is not None:
        lines.append("")
        lines.append(alerts_text(report.drift.alerts, empty_ok=True))
    if report.equipment is not None and report.defects.judged:
        lines.append(equipment_text(report.equipment, empty_ok=True))
    return "\n".join(lines) + "\n"


def alerts_text(alerts: Sequence[DriftAlert], *, empty_ok: bool = False) -> str:
    """One line per drift alert (or one line saying there is none)."""
    if not alerts:
        return "Drift check: no drop in quality beyond chance." if empty_ok else "No drift alerts."
    lines = [f"Drift alerts ({len(alerts)}):"]
    lines.extend(
        f"  ALERT {shown_text(a.message(DIMENSION_LABELS.get(a.dimension, a.dimension)))}"
        for a in alerts
    )
    return "\n".join(lines)


def _csv_row(
    report: QAReport, dimension: str, g: GroupFigures, group: str, columns: Sequence[str]
) -> dict[str, Any]:
    values = g.to_dict()
    values.update(defect_csv_values(report, g.group, overall=dimension == "all"))
    assert report.period is not None
    values.update(
        dimension=dimension,
        group=group,
        since=report.period.since.isoformat(),
        until=report.period.until.isoformat(),
        model_version=report.model_version or "all",
    )
    return {k: "" if values.get(k) is None else csv_cell(values[k]) for k in columns}


def report_csv(report: QAReport) -> str:
    """One row per group (``group`` empty: not recorded), then the row of all scans
    (``dimension`` = ``all``). Only the header when there is no data. Text cells that
    would start a formula are neutralised (:func:`csv_cell`). When scans were judged for
    defects, the defect columns follow (:func:`defect_csv_columns`; shares over judged scans)."""
    out = io.StringIO()
    columns = list(CSV_COLUMNS)
    if report.defects.judged:
        columns += defect_csv_columns(report.defects.names)
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    if report.period is not None and report.overall.received:
        for g in report.groups:
            writer.writerow(_csv_row(report, report.dimension, g, g.group or "", columns))
        writer.writerow(_csv_row(report, "all", report.overall, "all", columns))
    return out.getvalue()

"""The defect parts of the HTML report (:mod:`worker.report.page` places them): the box of
suspected probe faults, the defect section (two charts and the table of first-defect shares
per group) and its lines of "how to read this report". Everything printed is escaped; group
names are hostile text."""

from __future__ import annotations

from html import escape

from db.qa.report import QAReport
from db.qa.rows import DEFECT
from worker.report.charts import TREND_GROUPS
from worker.report.defect_charts import defect_group_chart, defect_time_chart, defect_trend_chart
from worker.report.defect_text import judged_note, top_defects
from worker.report.text import DIMENSION_LABELS, group_label, shown_text

__all__ = ["defect_how_to_read", "defect_sections", "equipment_box"]


def _pct(value: float | None) -> str:
    return "&ndash;" if value is None else f"{value * 100:.0f}%"


def equipment_box(report: QAReport) -> str:
    """The suspected probe faults, apart from the drift alerts (empty when none)."""
    eq = report.equipment
    if eq is None or not eq.alerts:
        return ""
    items = "".join(f"<li>{escape(shown_text(a.message()))}</li>" for a in eq.alerts)
    return (
        f'<div class="box alert"><b>{len(eq.alerts)} suspected probe fault(s)</b> '
        f"({escape(eq.rule.defect)}, {eq.since} to {eq.until}):<ul>{items}</ul>"
        "These need the probe checked or serviced, not operator training.</div>"
    )


def _table(report: QAReport) -> str:
    d = report.defects
    label = escape(DIMENSION_LABELS[report.dimension])
    head = (
        f"<tr><th>{label}</th><th>Judged</th><th>No defect</th>"
        + "".join(f"<th>{escape(n)}</th>" for n in d.names)
        + "<th class=l>Poor scans: most frequent first defect</th></tr>"
    )
    rows = []
    groups = [] if report.dimension == DEFECT else [g.group for g in report.groups]
    for group, cls in [*((g, "") for g in groups), (None, "total")]:
        f = d.overall if cls else d.groups.get(group)
        if f is None or not f.judged:
            continue
        name = "All" if cls else group_label(group)
        poor = (
            "&ndash;"
            if f.poor_top is None
            else f"{escape(f.poor_top)} ({f.poor_top_scans} of {f.poor_judged})"
        )
        cells = "".join(f"<td>{_pct(f.share(n))}</td>" for n in d.names)
        rows.append(
            f'<tr class="{cls}"><td>{escape(shown_text(name))}</td><td>{f.judged}</td>'
            f"<td>{_pct(f.no_defect / f.judged)}</td>{cells}<td class=l>{poor}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def defect_sections(report: QAReport) -> tuple[list[str], int]:
    """The defect section and the number of charts in it."""
    d = report.defects
    parts = ["<h2>Defects</h2>", f'<p class="sub">{escape(judged_note(report))}</p>']
    if not d.judged:
        return parts, 0
    if not d.overall.ranked():
        parts.append(
            f'<p class="sub">None of the {d.overall.judged} judged scans lists a defect.</p>'
        )
        return parts, 0
    parts.append(
        f'<p class="sub">All scans: {escape(top_defects(d.overall, limit=5))}. Each scan counts '
        "once, by its first defect (the most probable one it lists).</p>"
    )
    charts = 1
    if report.dimension != DEFECT and d.groups:
        parts.append(
            f'<img class="chart" alt="first defects per group" src="{defect_group_chart(report)}">'
        )
        charts += 1
    parts.append(
        f'<img class="chart" alt="first defects over time" src="{defect_time_chart(report)}">'
    )
    if report.dimension != DEFECT and d.group_days:
        parts.append(
            '<p class="sub">Per group over time: the share of one first defect in each 7-day '
            "period (the last one is the period the drift check looks at); a defect with an "
            f"alert is drawn in red, then the most frequent, at most {TREND_GROUPS} lines.</p>"
            f'<img class="chart" alt="first defect share per group over time" '
            f'src="{defect_trend_chart(report)}">'
        )
        charts += 1
    parts.append(_table(report))
    return parts, charts


def defect_how_to_read(report: QAReport) -> str:
    """The "how to read" lines about defects and probe faults."""
    rule = report.drift.rule if report.drift else None
    eq = report.equipment.rule if report.equipment else None
    text = (
        "<li><b>Defects</b>: what the model says is wrong with a scan (low_gain, shadowing, "
        "dead_elements...); a scan's <b>first defect</b> is the most probable one it lists. "
        "Shares count only scans whose model judges defects; a model without a defect head "
        "lists none, which means <i>not judged</i>, not clean. The README's QA section says "
        "what each defect usually means at the scanner.</li>"
    )
    if rule is not None:
        text += (
            f"<li><b>Defect alerts</b>: a group's share of one first defect rose by at least "
            f"{rule.defect_rise * 100:g} percentage points (Fisher's exact test, in the same "
            "Bonferroni correction as the score alerts). dead_elements is left to the probe "
            "check below.</li>"
        )
    if eq is not None:
        text += (
            f"<li><b>Suspected probe faults</b>: one probe (station and transducer) whose scans "
            f"list {escape(eq.defect)} on at least {eq.min_scans} scans over at least "
            f"{eq.min_days} days in the last {eq.lookback_days}, and on at least "
            f"{eq.min_share * 100:g}% of its scans from the first of them on.</li>"
        )
    return text

"""``usqa report --html``: one self-contained HTML file (styles inline, charts as PNG data
URIs from :mod:`worker.report.charts`) that opens offline in any browser and prints.

The page: the headline figures, drift alerts, the charts, then the group table, the worst
scans (ids and scores, thumbnails only when asked for) and how to read it all. Group names
come from file headers, so they are hostile text: the page escapes everything it prints and
shows control characters escaped.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import TYPE_CHECKING

from db.qa.report import QAReport
from worker.report.charts import (
    TREND_GROUPS,
    Thresholds,
    chart_label,
    distribution_chart,
    ranking_chart,
    shown_groups,
    timeline_chart,
    trend_chart,
)
from worker.report.defect_page import defect_how_to_read, defect_sections, equipment_box
from worker.report.defect_text import defects_cell
from worker.report.text import DIMENSION_LABELS, group_label, shown_text

if TYPE_CHECKING:
    from worker.report.thumbnails import Thumbnail

__all__ = ["render_html"]

TITLE = "Ultrasound image quality report"

CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1f2933;
  margin:0;background:#f5f7fa;line-height:1.45}
main{max-width:1140px;margin:0 auto;padding:24px 28px 48px;background:#fff}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:19px;margin:32px 0 8px;border-bottom:1px solid #e4e7eb;padding-bottom:4px}
.sub{color:#6b7785;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{flex:1 1 110px;border:1px solid #e4e7eb;border-radius:8px;padding:10px 14px}
.card .v{font-size:26px;font-weight:600} .card .k{color:#6b7785;font-size:13px}
.good{color:#2f7a2f} .average{color:#b7791f} .poor{color:#b23a32}
.box{border-radius:8px;padding:12px 16px;margin:16px 0}
.alert{background:#fdecea;border:1px solid #e8a29c}
.ok{background:#eaf5ea;border:1px solid #a9d3a9}
.note{background:#fff8e6;border:1px solid #f0d49a}
.nodata{background:#eef2f7;border:1px solid #c5cfdb;font-size:18px;padding:28px}
table{border-collapse:collapse;width:100%;font-size:13.5px;margin:8px 0}
th,td{padding:5px 8px;border-bottom:1px solid #e4e7eb;text-align:right;vertical-align:middle}
td{white-space:nowrap} td.uid{white-space:normal}
th{background:#f0f3f7;font-weight:600} td:first-child,th:first-child{text-align:left}
td.l,th.l{text-align:left} tr.total td{font-weight:600;border-top:2px solid #c5cfdb}
img.chart{width:100%;height:auto;display:block;margin:8px 0}
img.thumb{max-width:160px;max-height:120px;display:block}
.images{display:flex;gap:8px;align-items:flex-start} figure.overlay{margin:0;max-width:340px}
img.overlay{max-width:330px;max-height:120px;display:block}
figure.overlay figcaption{white-space:normal;font-size:11px;color:#6b7785}
.uid{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:11.5px;word-break:break-all;
  text-align:left} ul{margin:6px 0 6px 20px;padding:0} li{margin:3px 0}
footer{color:#6b7785;font-size:12px;margin-top:32px}
@media print{body{background:#fff} main{padding:0} h2{break-after:avoid}
  img.chart{break-inside:avoid}}
"""

# Counts the charts the browser actually decoded; a chart that failed is logged as an error.
CHECK_SCRIPT = """
window.addEventListener("load", function () {
  var ok = 0;
  document.querySelectorAll("img.chart").forEach(function (img) {
    if (img.complete && img.naturalWidth > 0) { ok += 1; }
    else { console.error("chart did not render: " + img.alt); }
  });
  document.body.setAttribute("data-charts-rendered", String(ok));
  var overlays = 0;
  document.querySelectorAll("img.thumb, img.overlay").forEach(function (img) {
    if (img.complete && img.naturalWidth > 0) { overlays += img.classList.contains("overlay"); }
    else { console.error("image did not render: " + img.alt); }
  });
  document.body.setAttribute("data-overlays-rendered", String(overlays));
});
"""


def _pct(value: float | None) -> str:
    return "&ndash;" if value is None else f"{value * 100:.0f}%"


def _num(value: float | None, digits: int = 1) -> str:
    return "&ndash;" if value is None else f"{value:.{digits}f}"


def _card(value: str, key: str, cls: str = "") -> str:
    return f'<div class="card"><div class="v {cls}">{value}</div><div class="k">{key}</div></div>'


def _group_table(report: QAReport, alerted: set[str | None]) -> str:
    label = escape(DIMENSION_LABELS[report.dimension])
    head = (
        f"<tr><th>{label}</th><th>Scans</th><th>Mean</th><th>95% interval</th><th>Median</th>"
        "<th>Good</th><th>Average</th><th>Poor</th><th>Poor 95% interval</th>"
        "<th>Failed</th><th>Skipped</th></tr>"
    )
    rows = []
    for g, cls in [*((g, "") for g in report.groups), (report.overall, "total")]:
        s = g.stats
        name = "All" if cls else group_label(g.group)
        flag = ' <span class="poor">(alert)</span>' if not cls and g.group in alerted else ""
        ci = (
            "&ndash;"
            if s.ci_low is None or s.ci_high is None
            else f"{s.ci_low:.1f} &ndash; {s.ci_high:.1f}"
        )
        poor_ci = s.poor_interval()
        poor_text = (
            "&ndash;"
            if poor_ci is None
            else f"{poor_ci[0] * 100:.0f}% &ndash; {poor_ci[1] * 100:.0f}%"
        )
        rows.append(
            f'<tr class="{cls}"><td>{escape(shown_text(name))}{flag}</td><td>{s.scans}</td>'
            f"<td>{_num(s.mean)}</td><td>{ci}</td><td>{_num(s.median)}</td>"
            f'<td class="good">{_pct(s.share("good"))}</td>'
            f'<td class="average">{_pct(s.share("average"))}</td>'
            f'<td class="poor">{_pct(s.share("poor"))}</td><td>{poor_text}</td>'
            f"<td>{g.failed}</td><td>{g.skipped}</td></tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _image_cell(scan_id: int, thumb: Thumbnail | None) -> str:
    """The thumbnail of a scan and, beside it, its saliency overlay with the legend (or
    the note saying why there is none)."""
    if thumb is None or not thumb.uri:
        note = thumb.note if thumb is not None and thumb.note else "file no longer available"
        return f"<td class=l>{escape(note)}</td>"
    image = f'<img class="thumb" alt="scan {scan_id}" src="{escape(thumb.uri)}">'
    if thumb.overlay:
        legend = escape(shown_text(thumb.legend))
        image += (
            f'<figure class="overlay"><img class="overlay" alt="scan {scan_id}: where the '
            f'evidence lies" title="{legend}" src="{escape(thumb.overlay)}">'
            f"<figcaption>{legend}</figcaption></figure>"
        )
    elif thumb.legend:
        image += f'<div class="sub">{escape(shown_text(thumb.legend))}</div>'
    return f'<td class=l><div class="images">{image}</div></td>'


def _worst_table(report: QAReport, thumbnails: Mapping[int, Thumbnail] | None) -> str:
    thumbs = thumbnails is not None
    head = (
        "<tr><th>Scan id</th><th class=l>Day</th><th>Score</th><th class=l>Grade</th>"
        "<th>Lowest frame</th><th>Frames</th><th class=l>Station</th><th class=l>Transducer</th>"
        "<th class=l>Operator</th><th class=l>Body part</th><th class=l>SOP instance UID</th>"
        "<th class=l>Defects</th>" + ("<th class=l>Image</th>" if thumbs else "") + "</tr>"
    )
    rows = []
    for w in report.worst:
        cells = [
            f"<td>{w.scan_id}</td>",
            f"<td class=l>{w.day.isoformat()}</td>",
            f"<td>{w.score:.1f}</td>",
            f'<td class="l {escape(w.grade)}">{escape(w.grade)}</td>',
            f"<td>{_num(w.min_frame_score)}</td>",
            f"<td>{w.frames_scored}</td>",
            f"<td class=l>{escape(chart_label(w.station_name))}</td>",
            f"<td class=l>{escape(chart_label(w.transducer))}</td>",
            f"<td class=l>{escape(chart_label(w.operator))}</td>",
            f"<td class=l>{escape(chart_label(w.body_part))}</td>",
            f'<td class="uid">{escape(shown_text(w.sop_instance_uid or ""))}</td>',
            f"<td class=l>{escape(defects_cell(w.defects))}</td>",
        ]
        if thumbs:
            assert thumbnails is not None
            cells.append(_image_cell(w.scan_id, thumbnails.get(w.scan_id)))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _alerts_box(report: QAReport) -> str:
    drift = report.drift
    if drift is None:
        return ""
    windows = (
        f"last {drift.rule.recent_days} days ({drift.recent_since} to {drift.until}) compared "
        f"with the {drift.rule.baseline_days} days before"
    )
    if not drift.alerts:
        tested = sum(1 for c in drift.checks if c.outcome != "too few scans")
        if tested == 0:
            return (
                '<div class="box note"><b>No drift check yet.</b> No group has '
                f"{drift.rule.min_scans} scored scans in both windows ({windows}).</div>"
            )
        return (
            f'<div class="box ok"><b>No drift alerts.</b> {tested} group(s) checked: {windows}. '
            "No drop in mean score or rise in poor share beyond chance.</div>"
        )
    items = "".join(
        f"<li>{escape(shown_text(a.message(DIMENSION_LABELS.get(a.dimension, a.dimension))))}</li>"
        for a in drift.alerts
    )
    return (
        f'<div class="box alert"><b>{len(drift.alerts)} drift alert(s)</b>: {windows}.'
        f"<ul>{items}</ul>Check these scanners, probes or operators first "
        "(settings, probe damage, training).</div>"
    )


def _how_to_read(report: QAReport, t: Thresholds) -> str:
    rule = report.drift.rule if report.drift else None
    drift = (
        ""
        if rule is None
        else (
            f"<li><b>Drift alerts</b> compare each group's last {rule.recent_days} days with "
            f"its own {rule.baseline_days} days before. An alert needs a drop of at least "
            f"{rule.mean_drop:g} points in mean score (Welch's t-test) or a rise of at least "
            f"{rule.poor_rise * 100:g} percentage points in the poor share (Fisher's exact "
            f"test), with p below {rule.p_value:g} divided by the number of tests "
            f"(Bonferroni), and at least {rule.min_scans} scans in each window.</li>"
        )
    )
    return (
        "<ul>"
        "<li><b>Score</b>: 0 (unusable) to 100 (as good as the reference images), from a "
        "neural network that looks at each frame; a scan's score combines its frames. "
        f"<b>Grades</b>: good from {t.good:g}, average from {t.average:g}, poor below "
        "(as set when the scans were scored).</li>"
        "<li><b>95% interval</b>: the range the group's true mean score very probably lies "
        "in; it is wide when a group has few scans. Two groups whose intervals do not "
        "overlap really differ.</li>"
        "<li><b>Day</b>: the day the scan was acquired by the scanner's clock (or received, "
        "when the file does not say).</li>"
        "<li><b>Failed</b>: the file could not be read; <b>skipped</b>: not an ultrasound "
        "image, or a copy of a scan already scored.</li>"
        f"{drift}{defect_how_to_read(report)}"
        "<li>Operators appear as pseudonyms. The report holds no patient names or ids; the "
        "SOP instance UID finds a scan in PACS.</li>"
        "</ul>"
    )


def _alerted(report: QAReport) -> set[str | None]:
    """The groups of the report's grouping that have a drift alert."""
    return {
        a.group
        for a in (report.drift.alerts if report.drift else [])
        if a.dimension == report.dimension
    }


def _cards(report: QAReport) -> list[str]:
    o, s = report.overall, report.overall.stats
    n_alerts = len(report.drift.alerts) if report.drift else 0
    return [
        '<div class="cards">',
        _card(str(s.scans), "scans scored"),
        _card(_num(s.mean), "mean score"),
        _card(_pct(s.share("good")), "good", "good"),
        _card(_pct(s.share("average")), "average", "average"),
        _card(_pct(s.share("poor")), "poor", "poor"),
        _card(f"{o.failed} / {o.skipped}", "failed / skipped"),
        _card(str(n_alerts), "drift alerts", "poor" if n_alerts else "good"),
        "</div>",
    ]


def _notes(report: QAReport) -> list[str]:
    """What limits the figures (one scan, other model versions left out), then the alerts."""
    parts = []
    if report.overall.stats.scans < 2:
        parts.append(
            '<div class="box note">Only one scored scan in this period: too few for '
            "intervals, distributions or drift checks. The figures below describe that "
            "one scan.</div>"
        )
    excluded = report.excluded_versions
    if excluded:
        parts.append(
            f'<div class="box note">{sum(excluded.values())} scans of this period were '
            f"scored by other model versions ({escape(', '.join(excluded))}) and are not "
            "included: scores of different models are not comparable.</div>"
        )
    parts.append(_alerts_box(report))
    parts.append(equipment_box(report))
    return parts


def _chart_sections(report: QAReport, t: Thresholds, alerted: set[str | None]) -> list[str]:
    """The four charts with their headings and notes."""
    label = DIMENSION_LABELS[report.dimension]
    shown = len(shown_groups(report))
    more = sum(1 for g in report.groups if g.stats.scans > 0) - shown
    note = f" Showing the {shown} lowest; {more} more in the table." if more > 0 else ""
    return [
        "<h2>Quality over time</h2>",
        f'<img class="chart" alt="grade shares over time" src="{timeline_chart(report, t)}">',
        f"<h2>{escape(label)}s over time</h2>",
        '<p class="sub">Each point is the mean score of one 7-day period; the last period '
        "is the one the drift check looks at. Groups with an alert are drawn in red; "
        f"otherwise the {TREND_GROUPS} lowest are shown.</p>",
        f'<img class="chart" alt="mean score per group over time" '
        f'src="{trend_chart(report, t, alerted)}">',
        f"<h2>{escape(label)}s ranked by mean score</h2>",
        '<p class="sub">Lowest first. The bar is the 95% interval of the mean; the dashed '
        f"line is the mean of all scans.{escape(note)}</p>",
        f'<img class="chart" alt="groups ranked by mean score" '
        f'src="{ranking_chart(report, t, alerted)}">',
        f"<h2>Score distribution per {escape(label.lower())}</h2>",
        f'<img class="chart" alt="score distribution per group" '
        f'src="{distribution_chart(report, t)}">',
    ]


def _table_sections(
    report: QAReport, alerted: set[str | None], thumbnails: Mapping[int, Thumbnail] | None
) -> list[str]:
    """The group table and the lowest-scoring scans (with the thumbnails' warning)."""
    label = DIMENSION_LABELS[report.dimension]
    parts = [
        f"<h2>All {escape(label.lower())}s</h2>",
        _group_table(report, alerted),
        f"<h2>Lowest-scoring scans ({len(report.worst)})</h2>",
        '<p class="sub">Look these up in PACS by SOP instance UID, or with '
        "<code>usqa scans</code> by scan id.</p>",
        _worst_table(report, thumbnails),
    ]
    if thumbnails is not None:
        parts.append(
            '<div class="box note">This file contains image thumbnails, which may show '
            "burned-in patient details: share it only as you would the images.</div>"
        )
    return parts


def _footer(report: QAReport, database: str) -> str:
    generated = report.generated_at.strftime("%Y-%m-%d %H:%M UTC")
    footer = f"Generated by usqa report on {generated}"
    if database:
        footer += f" from {escape(database)}"
    return f"<footer>{footer}.</footer>"


def _document(period: str, charts: int, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{TITLE}{' ' + escape(period) if period else ''}</title>\n"
        f"<style>{CSS}</style>\n</head>\n"
        f'<body data-charts="{charts}">\n<main>\n{body}\n</main>\n'
        f"<script>{CHECK_SCRIPT}</script>\n</body>\n</html>\n"
    )


def render_html(
    report: QAReport,
    *,
    thresholds: Thresholds | None = None,
    thumbnails: Mapping[int, Thumbnail] | None = None,
    database: str = "",
) -> str:
    """The report page. ``thumbnails``: scan id -> its image (a PNG data URI, or the note
    saying why there is none); pass None to leave images out altogether."""
    t = thresholds or Thresholds()
    label = DIMENSION_LABELS[report.dimension]
    period = "" if report.period is None else f"{report.period} ({report.period.days} days)"
    model = report.model_version or "all model versions"
    sub = f"{escape(period)} &middot; by {escape(label.lower())} &middot; model {escape(model)}"
    parts = [f"<h1>{TITLE}</h1>", f'<p class="sub">{sub}</p>']
    charts = 0
    reason = report.no_data_reason()
    if reason is not None:
        parts.append(f'<div class="box nodata"><b>No data.</b> {escape(reason)}</div>')
    else:
        alerted = _alerted(report)
        parts += _cards(report) + _notes(report) + _chart_sections(report, t, alerted)
        defect_parts, defect_charts = defect_sections(report)
        parts += defect_parts
        charts = 4 + defect_charts
        parts += _table_sections(report, alerted, thumbnails)
    parts.append("<h2>How to read this report</h2>")
    parts.append(_how_to_read(report, t))
    parts.append(_footer(report, database))
    return _document(period, charts, "\n".join(p for p in parts if p))

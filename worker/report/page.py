"""``usqa report --html``: one self-contained HTML file (styles inline, charts as PNG data
URIs drawn with matplotlib's Agg renderer) that opens offline in any browser and prints.

Charts: grade shares, mean score and volume over time; the groups ranked by mean score with
95 % intervals; the score distribution per group; then the group table, the worst scans
(ids and scores, thumbnails only when asked for) and how to read it all.

Group names come from file headers, so they are hostile text: every chart is drawn with
matplotlib's mathtext and TeX off (a station called ``$\\frac{1}{0}$`` is drawn as typed,
never parsed), control characters are shown escaped, legend entries are passed explicitly
(a name starting with ``_`` is not hidden), and the page escapes everything it prints.
"""

from __future__ import annotations

import base64
import functools
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from db.qa.queries import DayGrades, GroupFigures
from db.qa.report import QAReport
from worker.report.text import DIMENSION_LABELS, group_label, shown_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from worker.report.thumbnails import Thumbnail

__all__ = ["Thresholds", "render_html"]

GOOD, AVERAGE, POOR = "#3a923a", "#e8a33d", "#c8453c"
INK, MUTED = "#1f2933", "#6b7785"
MAX_CHART_GROUPS = 30
# Text in charts is text: no mathtext ($...$), no TeX, whatever the site's matplotlibrc says.
PLAIN_TEXT_RC: dict[Any, Any] = {"text.parse_math": False, "text.usetex": False}

_P = ParamSpec("_P")
_R = TypeVar("_R")


def plain_text(chart: Callable[_P, _R]) -> Callable[_P, _R]:
    """Draw ``chart`` with :data:`PLAIN_TEXT_RC`: every label, title, tick and legend
    entry is created and rendered with mathtext and TeX off."""

    @functools.wraps(chart)
    def drawn(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        import matplotlib

        with matplotlib.rc_context(PLAIN_TEXT_RC):
            return chart(*args, **kwargs)

    return drawn


def chart_label(group: str | None) -> str:
    """A group's name as a chart shows it: one line, control characters escaped."""
    return shown_text(group_label(group))


@dataclass(frozen=True)
class Thresholds:
    """Grade thresholds (USQA_GOOD_THRESHOLD, USQA_AVERAGE_THRESHOLD), for the bands."""

    good: float = 80.0
    average: float = 45.0


# --- charts -------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure  # the Agg canvas, no pyplot, no display needed

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _style(ax: Axes) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(colors=INK, labelsize=9)
    ax.grid(axis="x", color="#e4e7eb", linewidth=0.8)
    ax.set_axisbelow(True)


def _bands(ax: Axes, t: Thresholds, *, vertical: bool) -> None:
    """Pale grade bands behind a score axis."""
    span = ax.axvspan if vertical else ax.axhspan
    span(0, t.average, color=POOR, alpha=0.07, linewidth=0)
    span(t.average, t.good, color=AVERAGE, alpha=0.08, linewidth=0)
    span(t.good, 100, color=GOOD, alpha=0.07, linewidth=0)


@dataclass(frozen=True)
class _Bucket:
    start: date
    scans: int
    good: int
    average: int
    poor: int
    mean: float | None


def _buckets(days: Sequence[DayGrades], since: date, until: date) -> tuple[list[_Bucket], str]:
    """Days, or ISO weeks (Monday first) when the period is longer than 13 weeks; empty
    buckets included so that gaps show."""
    weekly = (until - since).days + 1 > 91
    step = 7 if weekly else 1
    first = since - timedelta(days=since.weekday()) if weekly else since
    sums: dict[date, list[float]] = {}
    for d in days:
        key = d.day - timedelta(days=d.day.weekday()) if weekly else d.day
        acc = sums.setdefault(key, [0, 0, 0, 0, 0.0])
        acc[0] += d.scans
        acc[1] += d.good
        acc[2] += d.average
        acc[3] += d.poor
        acc[4] += (d.mean or 0.0) * d.scans
    out = []
    start = first
    while start <= until:
        n, g, a, p, total = sums.get(start, [0, 0, 0, 0, 0.0])
        out.append(_Bucket(start, int(n), int(g), int(a), int(p), total / n if n else None))
        start += timedelta(days=step)
    return out, "week" if weekly else "day"


@plain_text
def timeline_chart(report: QAReport, t: Thresholds) -> str:
    """Grade shares, mean score and number of scans per day (or week)."""
    assert report.period is not None
    buckets, unit = _buckets(report.days, report.period.since, report.period.until)
    fig = _figure(11, 6.2)
    top, mid, low = fig.subplots(3, 1, sharex=True, height_ratios=[3, 2, 1.2])
    x = [b.start for b in buckets]
    width = 6.0 if unit == "week" else 0.85
    shares = {
        k: [getattr(b, k) / b.scans * 100 if b.scans else 0.0 for b in buckets]
        for k in ("good", "average", "poor")
    }
    top.bar(x, shares["good"], width, color=GOOD, label="good")
    top.bar(x, shares["average"], width, bottom=shares["good"], color=AVERAGE, label="average")
    top.bar(
        x,
        shares["poor"],
        width,
        bottom=[g + a for g, a in zip(shares["good"], shares["average"], strict=True)],
        color=POOR,
        label="poor",
    )
    top.set_ylim(0, 100)
    top.set_ylabel("share of scans (%)", color=INK)
    top.set_title(f"Grade shares per {unit}", loc="left", color=INK, fontsize=12)
    top.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=9)
    _style(top)
    top.grid(axis="y", color="#e4e7eb")

    _bands(mid, t, vertical=False)
    means = [(b.start, b.mean) for b in buckets if b.mean is not None]
    mid.plot([m[0] for m in means], [m[1] for m in means], "-o", color=INK, markersize=3.5)
    mid.set_ylim(0, 100)
    mid.set_ylabel("mean score", color=INK)
    mid.set_title(
        f"Mean score per {unit} (bands: poor / average / good)", loc="left", color=INK, fontsize=11
    )
    _style(mid)

    low.bar(x, [b.scans for b in buckets], width, color="#9aa5b1")
    low.set_ylabel("scans", color=INK)
    low.set_title(f"Scans scored per {unit}", loc="left", color=INK, fontsize=11)
    _style(low)
    fig.autofmt_xdate(rotation=0, ha="center")
    return _png(fig)


def _periods(since: date, until: date, length: int = 7) -> list[tuple[date, date]]:
    """Consecutive ``length``-day periods ending on ``until`` (the first may be shorter),
    oldest first: the last one is the drift check's recent window."""
    out = []
    end = until
    while end >= since:
        out.append((max(since, end - timedelta(days=length - 1)), end))
        end -= timedelta(days=length)
    return out[::-1]


TREND_GROUPS = 8
TREND_COLORS = ("#3b6ea5", "#7a5195", "#2a9d8f", "#8d6e63", "#5c6bc0", "#00838f", "#6d4c41")


@plain_text
def trend_chart(report: QAReport, t: Thresholds, alerted: set[str | None]) -> str:
    """Mean score per group and 7-day period: the alerted groups, then the lowest."""
    assert report.period is not None
    periods = _periods(report.period.since, report.period.until)
    ranked = [g.group for g in report.groups if g.stats.scans > 0]
    shown = [g for g in ranked if g in alerted] + [g for g in ranked if g not in alerted]
    shown = shown[:TREND_GROUPS]
    fig = _figure(11, 4.2)
    ax = fig.subplots()
    _bands(ax, t, vertical=False)
    colors = iter(TREND_COLORS)
    handles: list[Any] = []
    for group in shown:
        xs: list[Any] = []  # dates: matplotlib converts them
        ys: list[float] = []
        for start, end in periods:
            days = [d for d in report.group_days if d.group == group and start <= d.day <= end]
            n = sum(d.scans for d in days)
            if n:
                xs.append(end)
                ys.append(sum(d.mean * d.scans for d in days) / n)
        if not xs:
            continue
        hot = group in alerted
        color = POOR if hot else next(colors, MUTED)
        (line,) = ax.plot(
            xs,
            ys,
            "-o",
            color=color,
            linewidth=2.6 if hot else 1.4,
            markersize=4,
        )
        handles.append((line, chart_label(group) + (" (ALERT)" if hot else "")))
    ax.set_ylim(0, 100)
    from matplotlib.dates import date2num

    ax.set_xlim(
        float(date2num(periods[0][1] - timedelta(days=3))),
        float(date2num(report.period.until + timedelta(days=3))),
    )
    ax.set_ylabel("mean score", color=INK)
    unit = DIMENSION_LABELS[report.dimension].lower()
    ax.set_title(
        f"Mean score per {unit}, 7-day periods ending {report.period.until}",
        loc="left",
        color=INK,
        fontsize=12,
    )
    if handles:  # explicit entries: matplotlib would drop a label that starts with "_"
        ax.legend(
            [h for h, _ in handles],
            [label for _, label in handles],
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
            frameon=False,
            fontsize=9,
        )
    _style(ax)
    ax.grid(axis="y", color="#e4e7eb")
    fig.autofmt_xdate(rotation=0, ha="center")
    return _png(fig)


def _shown_groups(report: QAReport) -> list[GroupFigures]:
    """The groups with scores, worst first, at most MAX_CHART_GROUPS of them."""
    return [g for g in report.groups if g.stats.scans > 0][:MAX_CHART_GROUPS]


@plain_text
def ranking_chart(report: QAReport, t: Thresholds, alerted: set[str | None]) -> str:
    """Mean score per group with its 95 % interval, lowest at the top."""
    groups = _shown_groups(report)
    fig = _figure(11, 1.2 + 0.38 * len(groups))
    ax = fig.subplots()
    _bands(ax, t, vertical=True)
    ys = list(range(len(groups)))[::-1]
    for y, g in zip(ys, groups, strict=True):
        s = g.stats
        color = POOR if g.group in alerted else INK
        if s.ci_low is not None and s.ci_high is not None and s.mean is not None:
            ax.errorbar(
                s.mean,
                y,
                xerr=[[s.mean - s.ci_low], [s.ci_high - s.mean]],
                fmt="o",
                color=color,
                ecolor=color,
                capsize=3,
                markersize=6,
            )
        elif s.mean is not None:
            ax.plot(s.mean, y, "o", color=color, markersize=6)
    mean = report.overall.stats.mean
    if mean is not None:
        ax.axvline(mean, color=MUTED, linestyle="--", linewidth=1)
        ax.text(mean, len(groups) - 0.4, f" all: {mean:.1f}", color=MUTED, fontsize=9, va="bottom")
    labels = [
        f"{chart_label(g.group)}{' (ALERT)' if g.group in alerted else ''}  n={g.stats.scans}"
        for g in groups
    ]
    ax.set_yticks(ys, labels)
    ax.set_ylim(-0.7, len(groups) - 0.1)
    ax.set_xlim(0, 100)
    ax.set_xlabel("mean score with 95% interval", color=INK)
    label = DIMENSION_LABELS[report.dimension]
    ax.set_title(
        f"{label}s ranked by mean score (lowest first)", loc="left", color=INK, fontsize=12
    )
    _style(ax)
    return _png(fig)


@plain_text
def distribution_chart(report: QAReport, t: Thresholds) -> str:
    """Box plots of the scores per group: box = middle half, line = median, whiskers =
    5th to 95th percentile, diamond = mean."""
    groups = _shown_groups(report)
    fig = _figure(11, 1.2 + 0.38 * len(groups))
    ax = fig.subplots()
    _bands(ax, t, vertical=True)
    stats: list[dict[str, object]] = []
    for g in groups:
        s = g.stats
        stats.append(
            {
                "label": chart_label(g.group),
                "med": s.median,
                "q1": s.q1,
                "q3": s.q3,
                "whislo": s.p5,
                "whishi": s.p95,
                "mean": s.mean,
                "fliers": [],
            }
        )
    positions = list(range(len(groups)))[::-1]
    ax.bxp(
        stats,
        positions=positions,
        orientation="horizontal",
        showmeans=True,
        widths=0.6,
        patch_artist=True,
        boxprops={"facecolor": "#dde3ea", "edgecolor": INK},
        medianprops={"color": INK, "linewidth": 2},
        meanprops={
            "marker": "D",
            "markerfacecolor": "white",
            "markeredgecolor": INK,
            "markersize": 5,
        },
        whiskerprops={"color": INK},
        capprops={"color": INK},
    )
    ax.set_xlim(0, 100)
    ax.set_ylim(-0.7, len(groups) - 0.3)
    ax.set_xlabel(
        "scan score (box: middle half; line: median; whiskers: 5th-95th percentile)", color=INK
    )
    ax.set_title(
        f"Score distribution per {DIMENSION_LABELS[report.dimension].lower()}",
        loc="left",
        color=INK,
        fontsize=12,
    )
    _style(ax)
    return _png(fig)


# --- page ---------------------------------------------------------------------------------

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


def _worst_table(report: QAReport, thumbnails: Mapping[int, Thumbnail] | None) -> str:
    thumbs = thumbnails is not None
    head = (
        "<tr><th>Scan id</th><th class=l>Day</th><th>Score</th><th class=l>Grade</th>"
        "<th>Lowest frame</th><th>Frames</th><th class=l>Station</th><th class=l>Transducer</th>"
        "<th class=l>Operator</th><th class=l>Body part</th><th class=l>SOP instance UID</th>"
        + ("<th class=l>Image</th>" if thumbs else "")
        + "</tr>"
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
        ]
        if thumbs:
            assert thumbnails is not None
            thumb = thumbnails.get(w.scan_id)
            uri = thumb.uri if thumb is not None else None
            note = thumb.note if thumb is not None and thumb.note else "file no longer available"
            cells.append(
                f'<td class=l><img class="thumb" alt="scan {w.scan_id}" src="{escape(uri)}"></td>'
                if uri
                else f"<td class=l>{escape(note)}</td>"
            )
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
        f"{drift}"
        "<li>Operators appear as pseudonyms. The report holds no patient names or ids; the "
        "SOP instance UID finds a scan in PACS.</li>"
        "</ul>"
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
    title = "Ultrasound image quality report"
    period = "" if report.period is None else f"{report.period} ({report.period.days} days)"
    model = report.model_version or "all model versions"
    sub = f"{escape(period)} &middot; by {escape(label.lower())} &middot; model {escape(model)}"
    parts = [f"<h1>{title}</h1>", f'<p class="sub">{sub}</p>']
    charts = 0
    reason = report.no_data_reason()
    if reason is not None:
        parts.append(f'<div class="box nodata"><b>No data.</b> {escape(reason)}</div>')
    else:
        o, s = report.overall, report.overall.stats
        alerted = {
            a.group
            for a in (report.drift.alerts if report.drift else [])
            if a.dimension == report.dimension
        }
        parts.append('<div class="cards">')
        parts.append(_card(str(s.scans), "scans scored"))
        parts.append(_card(_num(s.mean), "mean score"))
        parts.append(_card(_pct(s.share("good")), "good", "good"))
        parts.append(_card(_pct(s.share("average")), "average", "average"))
        parts.append(_card(_pct(s.share("poor")), "poor", "poor"))
        parts.append(_card(f"{o.failed} / {o.skipped}", "failed / skipped"))
        n_alerts = len(report.drift.alerts) if report.drift else 0
        parts.append(_card(str(n_alerts), "drift alerts", "poor" if n_alerts else "good"))
        parts.append("</div>")
        if s.scans < 2:
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
        parts.append("<h2>Quality over time</h2>")
        parts.append(
            f'<img class="chart" alt="grade shares over time" src="{timeline_chart(report, t)}">'
        )
        parts.append(f"<h2>{escape(label)}s over time</h2>")
        parts.append(
            '<p class="sub">Each point is the mean score of one 7-day period; the last period '
            "is the one the drift check looks at. Groups with an alert are drawn in red; "
            f"otherwise the {TREND_GROUPS} lowest are shown.</p>"
        )
        parts.append(
            f'<img class="chart" alt="mean score per group over time" '
            f'src="{trend_chart(report, t, alerted)}">'
        )
        shown = len(_shown_groups(report))
        more = sum(1 for g in report.groups if g.stats.scans > 0) - shown
        note = f" Showing the {shown} lowest; {more} more in the table." if more > 0 else ""
        parts.append(f"<h2>{escape(label)}s ranked by mean score</h2>")
        parts.append(
            '<p class="sub">Lowest first. The bar is the 95% interval of the mean; the dashed '
            f"line is the mean of all scans.{escape(note)}</p>"
        )
        parts.append(
            f'<img class="chart" alt="groups ranked by mean score" '
            f'src="{ranking_chart(report, t, alerted)}">'
        )
        parts.append(f"<h2>Score distribution per {escape(label.lower())}</h2>")
        parts.append(
            f'<img class="chart" alt="score distribution per group" '
            f'src="{distribution_chart(report, t)}">'
        )
        charts = 4
        parts.append(f"<h2>All {escape(label.lower())}s</h2>")
        parts.append(_group_table(report, alerted))
        parts.append(f"<h2>Lowest-scoring scans ({len(report.worst)})</h2>")
        parts.append(
            '<p class="sub">Look these up in PACS by SOP instance UID, or with '
            "<code>usqa scans</code> by scan id.</p>"
        )
        parts.append(_worst_table(report, thumbnails))
        if thumbnails is not None:
            parts.append(
                '<div class="box note">This file contains image thumbnails, which may show '
                "burned-in patient details: share it only as you would the images.</div>"
            )
    parts.append("<h2>How to read this report</h2>")
    parts.append(_how_to_read(report, t))
    generated = report.generated_at.strftime("%Y-%m-%d %H:%M UTC")
    footer = f"Generated by usqa report on {generated}"
    if database:
        footer += f" from {escape(database)}"
    parts.append(f"<footer>{footer}.</footer>")
    body = "\n".join(p for p in parts if p)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}{' ' + escape(period) if period else ''}</title>\n"
        f"<style>{CSS}</style>\n</head>\n"
        f'<body data-charts="{charts}">\n<main>\n{body}\n</main>\n'
        f"<script>{CHECK_SCRIPT}</script>\n</body>\n</html>\n"
    )

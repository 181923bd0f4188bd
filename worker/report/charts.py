"""The charts of the HTML report, each a PNG data URI drawn with matplotlib's Agg renderer
(no pyplot, no display): grade shares, mean score and volume over time; the mean score per
group and 7-day period; the groups ranked by mean score with 95 % intervals; the score
distribution per group.

Group names come from file headers, so they are hostile text: every chart is drawn with
matplotlib's mathtext and TeX off (a station called ``$\\frac{1}{0}$`` is drawn as typed,
never parsed), control characters are shown escaped, and legend entries are passed
explicitly (a name starting with ``_`` is not hidden).
"""

from __future__ import annotations

import base64
import functools
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from db.qa.figures import DayGrades, GroupFigures
from db.qa.report import QAReport
from worker.report.text import DIMENSION_LABELS, group_label, shown_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "TREND_GROUPS",
    "Thresholds",
    "bucket_of",
    "bucket_starts",
    "chart_label",
    "distribution_chart",
    "legend",
    "ranking_chart",
    "shown_groups",
    "timeline_chart",
    "trend_chart",
]

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


def _finish_time_chart(fig: Figure, ax: Axes, handles: Sequence[tuple[Any, str]]) -> str:
    """A one-axes chart over time finished: its legend, style, horizontal grid and dates."""
    legend(ax, handles)
    _style(ax)
    ax.grid(axis="y", color="#e4e7eb")
    fig.autofmt_xdate(rotation=0, ha="center")
    return _png(fig)


def legend(ax: Axes, handles: Sequence[tuple[Any, str]]) -> None:
    """A legend right of the axes with exactly ``handles`` (artist, label): explicit
    entries, as matplotlib would drop a label that starts with "_"."""
    if handles:
        ax.legend(
            [h for h, _ in handles],
            [label for _, label in handles],
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
            frameon=False,
            fontsize=9,
        )


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


def bucket_starts(since: date, until: date) -> tuple[list[date], bool]:
    """The first day of every time bucket from ``since`` to ``until``: days, or ISO weeks
    (Monday first) when the period is longer than 13 weeks; and whether they are weeks."""
    weekly = (until - since).days + 1 > 91
    start = since - timedelta(days=since.weekday()) if weekly else since
    starts = []
    while start <= until:
        starts.append(start)
        start += timedelta(days=7 if weekly else 1)
    return starts, weekly


def bucket_of(day: date, weekly: bool) -> date:
    """The first day of ``day``'s bucket."""
    return day - timedelta(days=day.weekday()) if weekly else day


def _buckets(days: Sequence[DayGrades], since: date, until: date) -> tuple[list[_Bucket], str]:
    """Days, or ISO weeks (Monday first) when the period is longer than 13 weeks; empty
    buckets included so that gaps show."""
    starts, weekly = bucket_starts(since, until)
    sums: dict[date, list[float]] = {}
    for d in days:
        acc = sums.setdefault(bucket_of(d.day, weekly), [0, 0, 0, 0, 0.0])
        acc[0] += d.scans
        acc[1] += d.good
        acc[2] += d.average
        acc[3] += d.poor
        acc[4] += (d.mean or 0.0) * d.scans
    out = []
    for start in starts:
        n, g, a, p, total = sums.get(start, [0, 0, 0, 0, 0.0])
        out.append(_Bucket(start, int(n), int(g), int(a), int(p), total / n if n else None))
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
    return _finish_time_chart(fig, ax, handles)


def shown_groups(report: QAReport) -> list[GroupFigures]:
    """The groups with scores, worst first, at most MAX_CHART_GROUPS of them."""
    return [g for g in report.groups if g.stats.scans > 0][:MAX_CHART_GROUPS]


@plain_text
def ranking_chart(report: QAReport, t: Thresholds, alerted: set[str | None]) -> str:
    """Mean score per group with its 95 % interval, lowest at the top."""
    groups = shown_groups(report)
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
    groups = shown_groups(report)
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

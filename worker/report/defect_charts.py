"""The defect charts of the HTML report (PNG data URIs, matplotlib Agg, plain text as in
:mod:`worker.report.charts`): the share of judged scans per first defect for each group,
and the same shares for all scans per day (or ISO week, as the report's time charts).
Shares are over the scans whose model judges defects."""

from __future__ import annotations

from datetime import date
from typing import Any

from db.qa.report import QAReport
from worker.report.charts import (
    INK,
    MAX_CHART_GROUPS,
    MUTED,
    POOR,
    TREND_GROUPS,
    _figure,
    _finish_time_chart,
    _periods,
    _png,
    _style,
    bucket_of,
    bucket_starts,
    chart_label,
    legend,
    plain_text,
)
from worker.report.text import DIMENSION_LABELS

__all__ = [
    "DEFECT_COLORS",
    "defect_color",
    "defect_group_chart",
    "defect_time_chart",
    "defect_trend_chart",
    "trend_pairs",
]

# One colour per defect of the vocabulary (model/defects.py order), distinguishable in print.
DEFECT_COLORS = (
    "#4e79a7",  # low_gain
    "#f28e2b",  # high_gain
    "#9c755f",  # low_contrast
    "#76b7b2",  # noise
    "#59a14f",  # depth_attenuation
    "#505050",  # shadowing
    "#e15759",  # no_signal
    "#b07aa1",  # blur
    "#edc948",  # compression
    "#ff9da7",  # dead_elements
)


def defect_color(names: list[str], name: str) -> str:
    return DEFECT_COLORS[names.index(name) % len(DEFECT_COLORS)]


@plain_text
def defect_group_chart(report: QAReport) -> str:
    """Per group (the report's order, at most MAX_CHART_GROUPS), stacked bars of the share
    of its judged scans with each first defect; what is left to 100 % had none."""
    d = report.defects
    groups = [g for g in report.groups if (f := d.groups.get(g.group)) and f.judged]
    groups = groups[:MAX_CHART_GROUPS]
    fig = _figure(11, 1.4 + 0.38 * max(1, len(groups)))
    ax = fig.subplots()
    ys = list(range(len(groups)))[::-1]
    left = [0.0] * len(groups)
    handles: list[tuple[Any, str]] = []
    for name in d.names:
        shares = [(d.groups[g.group].share(name) or 0.0) * 100 for g in groups]
        if not any(shares):
            continue
        bars = ax.barh(ys, shares, left=left, color=defect_color(d.names, name), height=0.7)
        handles.append((bars, name))
        left = [a + b for a, b in zip(left, shares, strict=True)]
    labels = [
        f"{chart_label(g.group)}  n={d.groups[g.group].judged}" for g in groups
    ]  # the group names of the other charts
    ax.set_yticks(ys, labels)
    ax.set_xlim(0, 100)
    ax.set_ylim(-0.7, max(1, len(groups)) - 0.3)
    ax.set_xlabel("share of judged scans with this first defect (%)", color=INK)
    label = DIMENSION_LABELS[report.dimension].lower()
    ax.set_title(f"First defects per {label}", loc="left", color=INK, fontsize=12)
    legend(ax, handles)
    _style(ax)
    return _png(fig)


@plain_text
def defect_time_chart(report: QAReport) -> str:
    """Stacked bars of the share of judged scans per first defect, per day or week."""
    assert report.period is not None
    d = report.defects
    starts, weekly = bucket_starts(report.period.since, report.period.until)
    judged: dict[date, int] = {}
    counts: dict[tuple[date, str], int] = {}
    for day in d.days:
        key = bucket_of(day.day, weekly)
        judged[key] = judged.get(key, 0) + day.judged
        for name, n in day.first.items():
            counts[key, name] = counts.get((key, name), 0) + n
    fig = _figure(11, 4.2)
    ax = fig.subplots()
    width = 6.0 if weekly else 0.85
    x: list[Any] = list(starts)  # dates: matplotlib converts them
    bottom = [0.0] * len(starts)
    handles: list[tuple[Any, str]] = []
    for name in d.names:
        shares = [
            counts.get((s, name), 0) / judged[s] * 100 if judged.get(s) else 0.0 for s in starts
        ]
        if not any(shares):
            continue
        bars = ax.bar(x, shares, width, bottom=bottom, color=defect_color(d.names, name))
        handles.append((bars, name))
        bottom = [a + b for a, b in zip(bottom, shares, strict=True)]
    top = max(bottom, default=0.0)
    ax.set_ylim(0, min(100.0, max(10.0, top * 1.15)))
    ax.set_ylabel("share of judged scans (%)", color=INK)
    unit = "week" if weekly else "day"
    ax.set_title(f"First defects per {unit}, all scans", loc="left", color=INK, fontsize=12)
    return _finish_time_chart(fig, ax, handles)


def trend_pairs(
    report: QAReport,
) -> tuple[list[tuple[str | None, str]], set[tuple[str | None, str]]]:
    """The (group, defect) lines of the trend chart: those with a drift alert of the
    report's grouping, then the most frequent first defects of the groups, at most
    TREND_GROUPS; and the alerted ones."""
    alerted = {
        (a.group, a.defect)
        for a in (report.drift.alerts if report.drift else [])
        if a.defect and a.dimension == report.dimension
    }
    common = sorted(
        ((f.first.get(n, 0), g, n) for g, f in report.defects.groups.items() for n in f.first),
        key=lambda t: (-t[0], t[1] is None, t[1] or "", t[2]),
    )
    pairs = sorted(alerted, key=lambda p: (p[0] is None, p[0] or "", p[1]))
    pairs += [(g, n) for k, g, n in common if k and (g, n) not in alerted]
    return pairs[:TREND_GROUPS], alerted


@plain_text
def defect_trend_chart(report: QAReport) -> str:
    """Share of a group's judged scans with one first defect per 7-day period (the last
    period is the drift check's recent window): alerted pairs in red."""
    assert report.period is not None
    periods = _periods(report.period.since, report.period.until)
    pairs, alerted = trend_pairs(report)
    fig = _figure(11, 4.2)
    ax = fig.subplots()
    handles: list[tuple[Any, str]] = []
    top = 10.0
    for group, name in pairs:
        xs: list[Any] = []  # dates: matplotlib converts them
        ys: list[float] = []
        for start, end in periods:
            days = [
                d for d in report.defects.group_days if d.group == group and start <= d.day <= end
            ]
            n = sum(d.judged for d in days)
            if n:
                xs.append(end)
                ys.append(sum(d.first.get(name, 0) for d in days) / n * 100)
        if not xs:
            continue
        hot = (group, name) in alerted
        color = POOR if hot else defect_color(report.defects.names, name)
        (line,) = ax.plot(
            xs, ys, "-o", color=color, linewidth=2.6 if hot else 1.4, markersize=4,
            linestyle="-" if hot else "--",
        )  # fmt: skip
        handles.append((line, f"{chart_label(group)}: {name}" + (" (ALERT)" if hot else "")))
        top = max(top, *ys)
    ax.set_ylim(0, min(100.0, top * 1.15))
    ax.set_ylabel("share of judged scans (%)", color=INK)
    label = DIMENSION_LABELS[report.dimension].lower()
    ax.set_title(
        f"First defect share per {label}, 7-day periods ending {report.period.until}",
        loc="left",
        color=INK if handles else MUTED,
        fontsize=12,
    )
    return _finish_time_chart(fig, ax, handles)

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
    _figure,
    _png,
    _style,
    bucket_of,
    bucket_starts,
    chart_label,
    plain_text,
)
from worker.report.text import DIMENSION_LABELS

__all__ = ["DEFECT_COLORS", "defect_color", "defect_group_chart", "defect_time_chart"]

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


def _legend(ax: Any, handles: list[tuple[Any, str]]) -> None:
    if handles:  # explicit entries: a label starting with "_" is not dropped
        ax.legend(
            [h for h, _ in handles],
            [label for _, label in handles],
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
            frameon=False,
            fontsize=9,
        )


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
    _legend(ax, handles)
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
    _legend(ax, handles)
    _style(ax)
    ax.grid(axis="y", color="#e4e7eb")
    fig.autofmt_xdate(rotation=0, ha="center")
    return _png(fig)

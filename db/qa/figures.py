"""The figures of the QA report, computed from :class:`db.qa.rows.ScoreRows` (no SQL here):
score figures per group, outcome counts per group, grades and means per day, the dataclass
of a low-scoring scan.

Definitions (the same everywhere in usqa):

* the median is the middle score, or the mean of the two middle scores; the percentiles
  5, 25, 75 and 95 are nearest-rank (the score at rank ``ceil(q * n / 100)``);
* the 95 % interval of a mean is Student's t-interval; of a share, Wilson's score interval
  (:mod:`db.qa.stats`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

import numpy as np
from numpy.typing import NDArray

from db.qa.rows import GRADES, ScoreRows, require_dimension
from db.qa.stats import t_interval, wilson_interval

__all__ = [
    "DayGrades",
    "GroupDay",
    "GroupFigures",
    "ScoreStats",
    "WorstScan",
    "daily_grades",
    "daily_group_means",
    "group_figures",
    "score_stats",
]

PENDING = ("queued", "processing")
PERCENTILES = (5, 25, 75, 95)


@dataclass
class ScoreStats:
    """Score figures of a set of scored scans (``None`` where the set is too small)."""

    scans: int = 0
    mean: float | None = None
    sd: float | None = None
    ci_low: float | None = None  # 95 % t-interval of the mean (needs 2), cut to 0..100
    ci_high: float | None = None
    median: float | None = None
    p5: float | None = None
    q1: float | None = None
    q3: float | None = None
    p95: float | None = None
    min: float | None = None
    max: float | None = None
    good: int = 0
    average: int = 0
    poor: int = 0

    def share(self, grade: str) -> float | None:
        """The share (0..1) of scans with ``grade``."""
        return getattr(self, grade) / self.scans if self.scans else None

    def poor_interval(self) -> tuple[float, float] | None:
        """95 % Wilson interval of the poor share."""
        return wilson_interval(self.poor, self.scans)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for grade in GRADES:
            out[f"{grade}_share"] = self.share(grade)
        interval = self.poor_interval()
        out["poor_share_ci_low"], out["poor_share_ci_high"] = interval or (None, None)
        return out


@dataclass
class GroupFigures:
    """One group of the report (``group`` None: the value was not recorded in the files)."""

    group: str | None
    stats: ScoreStats
    received: int = 0
    failed: int = 0
    skipped: int = 0
    pending: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "received": self.received,
            "failed": self.failed,
            "skipped": self.skipped,
            "pending": self.pending,
            **self.stats.to_dict(),
        }


@dataclass(frozen=True)
class DayGrades:
    """Scored scans of one day, per grade, and their mean score."""

    day: date
    scans: int
    good: int
    average: int
    poor: int
    mean: float | None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "day": self.day.isoformat()}


@dataclass(frozen=True)
class GroupDay:
    """Scored scans of one group on one day and their mean score."""

    day: date
    group: str | None
    scans: int
    mean: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "day": self.day.isoformat()}


@dataclass(frozen=True)
class WorstScan:
    """A low-scoring scan: identifiers and scores only, no patient data."""

    scan_id: int
    day: date
    score: float
    grade: str
    min_frame_score: float | None
    frames_scored: int
    station_name: str | None
    manufacturer: str | None
    model_name: str | None
    transducer: str | None
    operator: str | None
    body_part: str | None
    sop_instance_uid: str | None
    model_version: str
    # the defects it lists, most probable first ({name, probability, frames}); () clean;
    # None: its model version does not judge defects
    defects: tuple[dict[str, float | str], ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {**asdict(self), "day": self.day.isoformat()}
        out["defects"] = None if self.defects is None else [dict(d) for d in self.defects]
        return out


def _stats(scores: NDArray[np.float64], grades: NDArray[np.int8]) -> ScoreStats:
    n = int(scores.size)
    if n == 0:
        return ScoreStats()
    ordered = np.sort(scores)
    mean = float(ordered.mean())
    sd = float(ordered.std(ddof=1)) if n > 1 else None
    ci: tuple[float | None, float | None] = (None, None)
    if sd is not None:  # scores live in 0..100, and so does their mean
        low, high = t_interval(n, mean, sd)
        ci = (max(0.0, low), min(100.0, high))
    ranks = {q: ordered[(q * n + 99) // 100 - 1] for q in PERCENTILES}
    counts = np.bincount(grades, minlength=len(GRADES))
    return ScoreStats(
        scans=n,
        mean=mean,
        sd=sd,
        ci_low=ci[0],
        ci_high=ci[1],
        median=float((ordered[(n - 1) // 2] + ordered[n // 2]) / 2),
        p5=float(ranks[5]),
        q1=float(ranks[25]),
        q3=float(ranks[75]),
        p95=float(ranks[95]),
        min=float(ordered[0]),
        max=float(ordered[-1]),
        good=int(counts[0]),
        average=int(counts[1]),
        poor=int(counts[2]),
    )


def _group_of(rows: ScoreRows, dimension: str | None) -> tuple[NDArray[np.int32], list[Any]]:
    if dimension is None:
        return np.zeros(len(rows), dtype=np.int32), [None]
    require_dimension(dimension)
    return rows.codes[dimension], rows.labels[dimension]


def score_stats(
    rows: ScoreRows, keep: NDArray[np.bool_], dimension: str | None = None
) -> dict[str | None, ScoreStats]:
    """Score figures per group of ``dimension`` among the scans ``keep`` selects (one
    entry, key None, when ``dimension`` is None)."""
    codes, labels = _group_of(rows, dimension)
    out: dict[str | None, ScoreStats] = {}
    selected = np.flatnonzero(keep)
    if selected.size == 0:
        return out
    order = selected[np.argsort(codes[selected], kind="stable")]
    sorted_codes = codes[order]
    bounds = np.flatnonzero(np.diff(sorted_codes)) + 1
    for chunk in np.split(order, bounds):
        label = labels[int(codes[chunk[0]])]
        out[label] = _stats(rows.score[chunk], rows.grade[chunk])
    return out


def group_figures(
    rows: ScoreRows,
    keep: NDArray[np.bool_],
    counts: dict[str | None, dict[str, int]],
    dimension: str | None = None,
) -> list[GroupFigures]:
    """Score figures (of the scans ``keep`` selects) and outcome counts per group, lowest
    mean score first; groups with no scored scan last, by name."""
    stats = score_stats(rows, keep, dimension)
    groups = []
    for key in set(stats) | set(counts):
        per_status = counts.get(key, {})
        groups.append(
            GroupFigures(
                group=key,
                stats=stats.get(key, ScoreStats()),
                received=sum(per_status.values()),
                failed=per_status.get("failed", 0),
                skipped=per_status.get("skipped", 0),
                pending=sum(per_status.get(s, 0) for s in PENDING),
            )
        )
    groups.sort(
        key=lambda g: (
            g.stats.mean is None,
            g.stats.mean if g.stats.mean is not None else 0.0,
            g.group is None,
            g.group or "",
        )
    )
    return groups


def daily_grades(rows: ScoreRows, keep: NDArray[np.bool_]) -> list[DayGrades]:
    """Scored scans per day and grade among ``keep`` (days without scans left out)."""
    out = []
    days = rows.day[keep]
    grades = rows.grade[keep]
    scores = rows.score[keep]
    for ordinal in np.unique(days):
        on_day = days == ordinal
        counts = np.bincount(grades[on_day], minlength=len(GRADES))
        out.append(
            DayGrades(
                day=date.fromordinal(int(ordinal)),
                scans=int(on_day.sum()),
                good=int(counts[0]),
                average=int(counts[1]),
                poor=int(counts[2]),
                mean=float(scores[on_day].mean()),
            )
        )
    return out


def daily_group_means(rows: ScoreRows, keep: NDArray[np.bool_], dimension: str) -> list[GroupDay]:
    """Scored scans and mean score per day and group of ``dimension``, by day."""
    codes, labels = _group_of(rows, dimension)
    days = rows.day[keep]
    groups = codes[keep]
    scores = rows.score[keep]
    out: list[GroupDay] = []
    if days.size == 0:
        return out
    key = days * (len(labels) + 1) + groups
    uniq, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=scores)
    for k, n, total in zip(uniq, counts, sums, strict=True):
        ordinal, code = divmod(int(k), len(labels) + 1)
        out.append(GroupDay(date.fromordinal(ordinal), labels[code], int(n), float(total / n)))
    out.sort(key=lambda g: (g.day, g.group is None, g.group or ""))
    return out

"""Drift alerts: is a scanner, probe or operator producing worse images than it used to?

For every group (a station, an operator, ...) the scans of the *recent* window (by default
the last 7 days up to the report's end) are compared with the same group's *baseline* (the
28 days before). Two things are checked, each with a one-sided test:

* the mean score fell: recent mean at least ``mean_drop`` points below the baseline mean,
  and Welch's t-test (unequal variances) says a drop that large is unlikely by chance;
* the poor share rose: recent share of ``poor`` grades at least ``poor_rise`` above the
  baseline share, and Fisher's exact test on the 2 x 2 table (poor / not poor by window)
  says so too.

* the share of one defect rose (:mod:`db.qa.defect_drift`): for each defect name, the share
  of judged scans whose first defect it is rose by at least ``defect_rise``, and Fisher's
  exact test says so too (``dead_elements`` is left to the equipment rule,
  :mod:`db.qa.equipment`).

A group is only tested when both windows hold at least ``min_scans`` scored scans (for the
defect shares: ``min_scans`` scans judged by a model that judges defects). The
p-values are compared with ``p_value`` divided by the number of tests run (Bonferroni), so
that checking many groups every day does not raise alarms on noise. Only scans of one model
version are compared (a new model is not a drift). The tests themselves (and scipy) are in
:mod:`db.qa.stats`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.orm import Session

from db.qa.defect_drift import DefectWindows, defect_findings, defect_windows, tested_defects
from db.qa.queries import fetch_scores
from db.qa.rows import GRADES, ScoreRows, require_dimension
from db.qa.stats import WindowStats, fisher_rise_p, welch_drop_p

__all__ = [
    "DriftAlert",
    "DriftCheck",
    "DriftResult",
    "DriftRule",
    "check_drift",
    "detect_drift",
]

MEAN = "mean score"
POOR = "poor share"
DEFECT_SHARE = "defect share"
POOR_CODE = GRADES.index("poor")


@dataclass(frozen=True)
class DriftRule:
    """When a change counts as a drift (see the module docstring)."""

    recent_days: int = 7
    baseline_days: int = 28
    min_scans: int = 30
    mean_drop: float = 5.0  # score points
    poor_rise: float = 0.10  # share, 0..1 (0.10 = ten percentage points)
    defect_rise: float = 0.10  # share of one first defect, 0..1
    p_value: float = 0.01  # family-wise, over every test of one run

    def __post_init__(self) -> None:
        problems = []
        if self.recent_days < 1 or self.baseline_days < 1:
            problems.append("the recent and baseline windows must be at least 1 day")
        if self.min_scans < 2:
            problems.append("the minimum number of scans per window must be at least 2")
        if self.mean_drop < 0 or not 0 <= self.poor_rise <= 1 or not 0 <= self.defect_rise <= 1:
            problems.append(
                "the score drop must be >= 0 and the poor-share and defect-share rises in 0..1"
            )
        if not 0 < self.p_value < 1:
            problems.append("the p-value threshold must be between 0 and 1")
        if problems:
            raise ValueError("; ".join(problems))

    def windows(self, until: date) -> tuple[date, date, date]:
        """(baseline start, recent start, until): the baseline ends the day before the
        recent window starts."""
        recent_start = until - timedelta(days=self.recent_days - 1)
        return recent_start - timedelta(days=self.baseline_days), recent_start, until


@dataclass(frozen=True)
class DriftAlert:
    """A drop that is larger than the rule's threshold and unlikely to be chance."""

    dimension: str
    group: str | None
    metric: str  # "mean score" | "poor share" | "defect share"
    baseline: float
    recent: float
    change: float  # recent - baseline (score points, or share 0..1)
    p_value: float
    threshold: float  # the Bonferroni-corrected p-value threshold it beat
    test: str
    baseline_scans: int
    recent_scans: int
    baseline_since: date
    recent_since: date
    until: date
    defect: str | None = None  # the defect whose share rose ("defect share" only)

    def message(self, label: str) -> str:
        """One line a QA lead can act on."""
        who = f"{label} {self.group or '(not recorded)'}"
        if self.metric == MEAN:
            what = (
                f"mean score fell from {self.baseline:.1f} to {self.recent:.1f} "
                f"({self.change:+.1f} points)"
            )
        elif self.metric == DEFECT_SHARE:
            what = (
                f"{self.defect} as first defect rose from {self.baseline:.0%} to "
                f"{self.recent:.0%} of judged scans ({self.change * 100:+.0f} percentage points)"
            )
        else:
            what = (
                f"poor share rose from {self.baseline:.0%} to {self.recent:.0%} "
                f"({self.change * 100:+.0f} percentage points)"
            )
        return (
            f"{who}: {what}; last {(self.until - self.recent_since).days + 1} days "
            f"({self.recent_since}..{self.until}, {self.recent_scans} scans) vs the "
            f"{(self.recent_since - self.baseline_since).days} days before "
            f"({self.baseline_scans} scans); {self.test} {_p_text(self.p_value)}"
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("baseline_since", "recent_since", "until"):
            out[key] = getattr(self, key).isoformat()
        return out


def _p_text(p: float) -> str:
    """``p = 0.0031``; ``p < 1e-300`` where the value underflows to zero."""
    return "p < 1e-300" if p < 1e-300 else f"p = {p:.2g}"


@dataclass(frozen=True)
class DriftCheck:
    """What was found for one group: ``alert``, ``ok`` or ``too few scans``."""

    dimension: str
    group: str | None
    outcome: str
    baseline: WindowStats | None
    recent: WindowStats | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "dimension": self.dimension,
            "group": self.group,
            "outcome": self.outcome,
            "baseline": None if self.baseline is None else asdict(self.baseline),
            "recent": None if self.recent is None else asdict(self.recent),
        }


@dataclass
class DriftResult:
    """The alerts of one run, and every group looked at."""

    rule: DriftRule
    baseline_since: date
    recent_since: date
    until: date
    model_version: str | None
    tests: int = 0
    alerts: list[DriftAlert] = field(default_factory=list)
    checks: list[DriftCheck] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": asdict(self.rule),
            "baseline_since": self.baseline_since.isoformat(),
            "recent_since": self.recent_since.isoformat(),
            "until": self.until.isoformat(),
            "model_version": self.model_version,
            "tests": self.tests,
            "corrected_p_value": self.rule.p_value / self.tests if self.tests else None,
            "alerts": [a.to_dict() for a in self.alerts],
            "checks": [c.to_dict() for c in self.checks],
        }


def _window_stats(
    rows: ScoreRows, keep: NDArray[np.bool_], dimension: str
) -> dict[str | None, WindowStats]:
    codes, labels = rows.codes[dimension], rows.labels[dimension]
    out: dict[str | None, WindowStats] = {}
    for code in np.unique(codes[keep]):
        chosen = keep & (codes == code)
        scores = rows.score[chosen]
        n = int(scores.size)
        out[labels[int(code)]] = WindowStats(
            scans=n,
            mean=float(scores.mean()),
            variance=float(scores.var(ddof=1)) if n > 1 else 0.0,
            poor=int((rows.grade[chosen] == POOR_CODE).sum()),
        )
    return out


def check_drift(
    session: Session,
    dimensions: Sequence[str],
    *,
    until: date,
    rule: DriftRule | None = None,
    model_version: str | None = None,
) -> DriftResult:
    """Read the scans of the windows ending on ``until`` and check them for drift."""
    rule = rule or DriftRule()
    baseline_since, _, _ = rule.windows(until)
    rows = fetch_scores(session, baseline_since, until)
    return detect_drift(rows, dimensions, until=until, rule=rule, model_version=model_version)


_Candidate = tuple[str, str | None, WindowStats, WindowStats]
# (metric, baseline, recent, change, p-value, test, defect, baseline scans, recent scans)
_Finding = tuple[str, float, float, float, float, str, str | None, int, int]


def _candidates(
    rows: ScoreRows,
    dimensions: Sequence[str],
    windows: tuple[NDArray[np.bool_], NDArray[np.bool_]],
    rule: DriftRule,
    checks: list[DriftCheck],
) -> list[_Candidate]:
    """The groups with enough scans in both windows (baseline, recent) to be tested; the
    others are added to ``checks`` as "too few scans"."""
    in_base, in_recent = windows
    candidates: list[_Candidate] = []
    for dimension in dimensions:
        require_dimension(dimension)
        base_stats = _window_stats(rows, in_base, dimension)
        recent_stats = _window_stats(rows, in_recent, dimension)
        groups = set(base_stats) | set(recent_stats)
        for name in sorted(groups, key=lambda g: (g is None, g or "")):
            base, recent = base_stats.get(name), recent_stats.get(name)
            if base is None or recent is None or min(base.scans, recent.scans) < rule.min_scans:
                checks.append(DriftCheck(dimension, name, "too few scans", base, recent))
                continue
            candidates.append((dimension, name, base, recent))
    return candidates


def _findings(
    base: WindowStats, recent: WindowStats, rule: DriftRule, threshold: float
) -> list[_Finding]:
    """The drifts of one group: a large enough change whose p-value beats ``threshold``."""
    found: list[_Finding] = []
    scans = (base.scans, recent.scans)
    drop = recent.mean - base.mean
    if -drop >= rule.mean_drop:
        p = welch_drop_p(base, recent)
        if p < threshold:
            found.append((MEAN, base.mean, recent.mean, drop, p, "Welch's t-test", None, *scans))
    rise = recent.poor_share - base.poor_share
    if rise >= rule.poor_rise:
        p = fisher_rise_p(base, recent)
        if p < threshold:
            found.append(
                (POOR, base.poor_share, recent.poor_share, rise, p, "Fisher's exact test", None,
                 *scans)
            )  # fmt: skip
    return found


def _defect_alerts(
    shares: DefectWindows | None, rows: ScoreRows, rule: DriftRule, threshold: float
) -> list[_Finding]:
    """The defect-share drifts of one group (none when it has too few judged scans)."""
    if shares is None:
        return []
    found = defect_findings(
        shares, rows.defect_names, tested_defects(rows), rule.defect_rise, threshold
    )
    return [
        (DEFECT_SHARE, before, now, change, p, "Fisher's exact test", defect,
         shares.base_judged, shares.recent_judged)
        for defect, before, now, change, p in found
    ]  # fmt: skip


def detect_drift(
    rows: ScoreRows,
    dimensions: Sequence[str],
    *,
    until: date,
    rule: DriftRule | None = None,
    model_version: str | None = None,
) -> DriftResult:
    """Check every group of each of ``dimensions`` for a drift ending on ``until``.
    ``rows`` must cover the baseline and recent windows; ``model_version`` None compares
    scans of every version together."""
    rule = rule or DriftRule()
    baseline_since, recent_since, until = rule.windows(until)
    result = DriftResult(rule, baseline_since, recent_since, until, model_version)
    in_base = rows.mask(
        since=baseline_since,
        until=recent_since - timedelta(days=1),
        model_version=model_version,
    )
    in_recent = rows.mask(since=recent_since, until=until, model_version=model_version)
    candidates = _candidates(rows, dimensions, (in_base, in_recent), rule, result.checks)
    by_defect = {
        d: defect_windows(rows, d, (in_base, in_recent), rule.min_scans) for d in set(dimensions)
    }
    defect_tests = sum(1 for d, name, _, _ in candidates if name in by_defect[d])
    result.tests = 2 * len(candidates) + len(tested_defects(rows)) * defect_tests
    threshold = rule.p_value / result.tests if result.tests else rule.p_value
    for dimension, name, base, recent in candidates:
        found = _findings(base, recent, rule, threshold)
        found += _defect_alerts(by_defect[dimension].get(name), rows, rule, threshold)
        for metric, before, now, change, p, test, defect, n_base, n_recent in found:
            result.alerts.append(
                DriftAlert(
                    dimension=dimension,
                    group=name,
                    metric=metric,
                    baseline=before,
                    recent=now,
                    change=change,
                    p_value=p,
                    threshold=threshold,
                    test=test,
                    baseline_scans=n_base,
                    recent_scans=n_recent,
                    baseline_since=baseline_since,
                    recent_since=recent_since,
                    until=until,
                    defect=defect,
                )
            )
        result.checks.append(DriftCheck(dimension, name, "alert" if found else "ok", base, recent))
    return result

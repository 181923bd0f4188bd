"""The whole QA report as one object: the figures (:mod:`db.qa.figures`, read through
:mod:`db.qa.queries`) and the drift checks (:mod:`db.qa.drift`) for one period, grouping and
model version. ``usqa report`` renders it (:mod:`worker.report`) as a terminal table, CSV,
JSON or HTML; every output shows the same figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.orm import Session

from db.qa.defects import (
    DefectFigures,
    DefectReport,
    daily_defects,
    daily_group_defects,
    defect_figures,
)
from db.qa.drift import DriftResult, DriftRule, detect_drift
from db.qa.equipment import EquipmentResult, ProbeRule, detect_probe_faults
from db.qa.figures import (
    DayGrades,
    GroupDay,
    GroupFigures,
    ScoreStats,
    WorstScan,
    daily_grades,
    daily_group_means,
    group_figures,
)
from db.qa.queries import (
    current_model_version,
    fetch_scores,
    listing,
    outcome_counts,
    resolve_period,
    worst_scans,
)
from db.qa.rows import DEFAULT_DAYS, DEFECT, Period, ScoreRows

__all__ = ["ALL_VERSIONS", "QAReport", "build_report", "check_alerts"]

ALL_VERSIONS = "all"


@dataclass
class QAReport:
    """Everything one report shows. ``period`` is None when the database holds no scan
    up to the requested end (an empty database, or a period before the first scan)."""

    dimension: str
    period: Period | None
    model_version: str | None  # None: every model version mixed
    generated_at: datetime
    overall: GroupFigures = field(default_factory=lambda: GroupFigures(None, ScoreStats()))
    groups: list[GroupFigures] = field(default_factory=list)
    days: list[DayGrades] = field(default_factory=list)
    group_days: list[GroupDay] = field(default_factory=list)  # per day and group
    worst: list[WorstScan] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)  # scored scans per version
    drift: DriftResult | None = None
    defects: DefectReport = field(default_factory=DefectReport)
    equipment: EquipmentResult | None = None

    @property
    def alert_count(self) -> int:
        """Drift alerts and suspected probe faults together."""
        drift = len(self.drift.alerts) if self.drift else 0
        return drift + (len(self.equipment.alerts) if self.equipment else 0)

    @property
    def has_scores(self) -> bool:
        return self.overall.stats.scans > 0

    @property
    def excluded_versions(self) -> dict[str, int]:
        """Scored scans of the period left out because another model version scored them."""
        if self.model_version is None:
            return {}
        return {v: n for v, n in self.versions.items() if v != self.model_version}

    def no_data_reason(self) -> str | None:
        """Why there is nothing to show, in words (None when there are scores)."""
        if self.period is None:
            return (
                "No scans in the database yet. Score some first (usqa run --watch DIR), "
                "then run usqa report again."
            )
        if self.overall.received == 0:
            return (
                f"No scans were received for {self.period}. Choose another period with "
                "--since/--until."
            )
        if not self.has_scores:
            return (
                f"None of the {self.overall.received} scans of {self.period} was scored "
                f"by model {self.model_version or 'any'} "
                f"({self.overall.failed} failed, {self.overall.skipped} skipped, "
                f"{self.overall.pending} still waiting)."
            )
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "dimension": self.dimension,
            "since": None if self.period is None else self.period.since.isoformat(),
            "until": None if self.period is None else self.period.until.isoformat(),
            "model_version": self.model_version,
            "generated_at": self.generated_at.isoformat(timespec="seconds"),
            "no_data": self.no_data_reason(),
            "overall": self.overall.to_dict(),
            "groups": [g.to_dict() for g in self.groups],
            "days": [d.to_dict() for d in self.days],
            "group_days": [d.to_dict() for d in self.group_days],
            "worst_scans": [w.to_dict() for w in self.worst],
            "model_versions": self.versions,
            "excluded_model_versions": self.excluded_versions,
            "drift": None if self.drift is None else self.drift.to_dict(),
            "defects": self.defects.to_dict(),
            "equipment": None if self.equipment is None else self.equipment.to_dict(),
        }


def _counts_by_defect(rows: ScoreRows, keep: NDArray[np.bool_]) -> dict[str | None, dict[str, int]]:
    """``--by defect``: scored scans per first-defect group (a file that failed or was
    skipped has no defect, so only scored scans are counted as received)."""
    counts = np.bincount(rows.codes[DEFECT][keep], minlength=len(rows.labels[DEFECT]))
    return {rows.labels[DEFECT][i]: {"scored": int(n)} for i, n in enumerate(counts) if n}


def _defect_report(rows: ScoreRows, keep: NDArray[np.bool_], dimension: str) -> DefectReport:
    """The defect figures of all scans, per group (not for ``--by defect``) and per day."""
    overall = defect_figures(rows, keep).get(None)
    return DefectReport(
        names=list(rows.defect_names),
        overall=overall or DefectFigures(None),
        groups={} if dimension == DEFECT else defect_figures(rows, keep, dimension),
        days=daily_defects(rows, keep),
        group_days=[] if dimension == DEFECT else daily_group_defects(rows, keep, dimension),
    )


def build_report(
    session: Session,
    *,
    dimension: str = "station",
    since: date | None = None,
    until: date | None = None,
    model_version: str | None = None,
    rule: DriftRule | None = None,
    probe_rule: ProbeRule | None = None,
    alert_dimensions: Sequence[str] | None = None,
    worst: int = 20,
    default_days: int = DEFAULT_DAYS,
    today: date | None = None,
    now: datetime | None = None,
) -> QAReport:
    """Gather the report. ``model_version``: a version, ``"all"`` to mix every version, or
    None for the version that scored the most recent scan. Without ``since`` the period
    is ``default_days`` long. Drift is checked over ``alert_dimensions`` (default:
    ``dimension``) for the windows ending on the period's last day; probe faults
    (``probe_rule``) over its look-back ending on that day."""
    now = now or datetime.now(UTC)
    today = today or now.date()
    if model_version is None:
        model_version = current_model_version(session)
    version = None if model_version == ALL_VERSIONS else model_version
    period = resolve_period(
        session, since=since, until=until, today=today, default_days=default_days
    )
    report = QAReport(dimension, period, version, now)
    if period is None:
        return report
    rule, probe_rule = rule or DriftRule(), probe_rule or ProbeRule()
    first = min(period.since, rule.windows(period.until)[0], probe_rule.since(period.until))
    rows = fetch_scores(session, first, period.until)
    in_period = rows.mask(since=period.since, until=period.until)
    report.versions = rows.version_counts(in_period)
    keep = rows.mask(since=period.since, until=period.until, model_version=version)
    [overall] = group_figures(rows, keep, outcome_counts(session, period), None) or [
        GroupFigures(None, ScoreStats())
    ]
    report.overall = overall
    counts = (
        _counts_by_defect(rows, keep)
        if dimension == DEFECT
        else outcome_counts(session, period, dimension)
    )
    report.groups = group_figures(rows, keep, counts, dimension)
    report.days = daily_grades(rows, keep)
    report.group_days = daily_group_means(rows, keep, dimension)
    report.worst = worst_scans(session, rows, keep, limit=worst)
    report.defects = _defect_report(rows, keep, dimension)
    report.drift = detect_drift(
        rows,
        [d for d in (alert_dimensions or [dimension]) if d != DEFECT],
        until=period.until,
        rule=rule,
        model_version=version,
    )
    report.equipment = detect_probe_faults(
        rows,
        listing(session, rows, probe_rule.defect),
        until=period.until,
        rule=probe_rule,
        model_version=version,
    )
    return report


def check_alerts(
    session: Session,
    dimensions: Sequence[str],
    *,
    today: date,
    rule: DriftRule | None = None,
    probe_rule: ProbeRule | None = None,
) -> tuple[DriftResult, EquipmentResult] | None:
    """Only the alerts of a default report (for monitoring): drift over ``dimensions`` and
    probe faults, for the windows ending on the latest day with scans (up to ``today``),
    among the scans of the current model version. None when nothing was scored yet."""
    until = resolve_period(session, since=None, until=None, today=today, default_days=1)
    version = current_model_version(session)
    if until is None or version is None:
        return None
    rule, probe_rule = rule or DriftRule(), probe_rule or ProbeRule()
    end = until.until
    rows = fetch_scores(session, min(rule.windows(end)[0], probe_rule.since(end)), end)
    drift = detect_drift(rows, dimensions, until=end, rule=rule, model_version=version)
    equipment = detect_probe_faults(
        rows,
        listing(session, rows, probe_rule.defect),
        until=end,
        rule=probe_rule,
        model_version=version,
    )
    return drift, equipment

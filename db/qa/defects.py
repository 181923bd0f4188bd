"""The defect figures of the QA report, computed from :class:`db.qa.rows.ScoreRows` (no SQL
here): per group, the share of scans whose *first* defect (``scan_scores.first_defect``,
the most probable one the scan lists) is each defect name, and the most frequent first
defect among the group's poor scans; the same shares per day.

Shares are taken over the scans whose model version judges defects
(``model_versions.defect_names`` not NULL), never over every scored scan: a model without a
defect head lists no defect, which means "not judged", not "clean". A judged scan without
any listed defect counts as "no defect".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
from numpy.typing import NDArray

from db.qa.rows import GRADES, ScoreRows, require_dimension

__all__ = [
    "DefectDay",
    "DefectFigures",
    "DefectReport",
    "GroupDefectDay",
    "daily_defects",
    "daily_group_defects",
    "defect_figures",
    "defect_table",
]

POOR_CODE = GRADES.index("poor")


def _share(k: int, n: int) -> float | None:
    return k / n if n else None


@dataclass
class DefectFigures:
    """The first defects of one group's scored scans (``group`` None: not recorded)."""

    group: str | None
    scans: int = 0  # scored scans
    judged: int = 0  # of which scored by a model version that judges defects
    first: dict[str, int] = field(default_factory=dict)  # first defect -> judged scans
    poor_judged: int = 0  # judged scans graded poor
    poor_top: str | None = None  # the most frequent first defect among those
    poor_top_scans: int = 0

    @property
    def no_defect(self) -> int:
        return self.judged - sum(self.first.values())

    def share(self, name: str) -> float | None:
        """The share (0..1) of judged scans whose first defect is ``name``."""
        return _share(self.first.get(name, 0), self.judged)

    def ranked(self) -> list[tuple[str, int]]:
        """(defect, scans) with at least one scan, most frequent first (ties: vocabulary)."""
        order = {name: i for i, name in enumerate(self.first)}
        return sorted(
            ((n, k) for n, k in self.first.items() if k), key=lambda nk: (-nk[1], order[nk[0]])
        )

    def to_dict(self, names: list[str]) -> dict[str, Any]:
        return {
            "group": self.group,
            "scans": self.scans,
            "judged": self.judged,
            "not_judged": self.scans - self.judged,
            "no_defect": self.no_defect,
            "no_defect_share": _share(self.no_defect, self.judged),
            "first_defect": {n: self.first.get(n, 0) for n in names},
            "first_defect_share": {n: self.share(n) for n in names},
            "poor_judged": self.poor_judged,
            "poor_top_defect": self.poor_top,
            "poor_top_defect_scans": self.poor_top_scans,
            "poor_top_defect_share": _share(self.poor_top_scans, self.poor_judged),
        }


@dataclass(frozen=True)
class DefectDay:
    """Judged scans of one day and their first defects."""

    day: date
    judged: int
    first: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "judged": self.judged, "first_defect": self.first}


@dataclass(frozen=True)
class GroupDefectDay:
    """Judged scans of one group on one day and their first defects."""

    day: date
    group: str | None
    judged: int
    first: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "group": self.group,
            "judged": self.judged,
            "first_defect": self.first,
        }


@dataclass
class DefectReport:
    """The report's defect figures: the vocabulary, all scans, per group and per day."""

    names: list[str] = field(default_factory=list)
    overall: DefectFigures = field(default_factory=lambda: DefectFigures(None))
    groups: dict[str | None, DefectFigures] = field(default_factory=dict)
    days: list[DefectDay] = field(default_factory=list)
    group_days: list[GroupDefectDay] = field(default_factory=list)

    @property
    def judged(self) -> bool:
        """Whether any scan of the report was judged for defects."""
        return self.overall.judged > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": self.names,
            "over": "scans whose model version judges defects",
            "overall": self.overall.to_dict(self.names),
            "groups": [g.to_dict(self.names) for g in self.groups.values()],
            "days": [d.to_dict() for d in self.days],
            "group_days": [d.to_dict() for d in self.group_days],
        }


def defect_table(
    codes: NDArray[np.int32], defect: NDArray[np.int16], groups: int, names: int
) -> NDArray[np.int64]:
    """A (groups, names + 1) table of scans per group and first defect (last: none)."""
    cell = codes.astype(np.int64) * (names + 1) + np.where(defect >= 0, defect, names)
    return np.bincount(cell, minlength=groups * (names + 1)).reshape(groups, names + 1)


def defect_figures(
    rows: ScoreRows, keep: NDArray[np.bool_], dimension: str | None = None
) -> dict[str | None, DefectFigures]:
    """First-defect figures per group of ``dimension`` among the scans ``keep`` selects
    (one entry, key None, when ``dimension`` is None). Groups without a scan are absent."""
    labels: list[str | None] = [None]
    if dimension is None:
        codes = np.zeros(len(rows), dtype=np.int32)
    else:
        require_dimension(dimension)
        codes, labels = rows.codes[dimension], rows.labels[dimension]
    names, k = rows.defect_names, len(rows.defect_names)
    scans = np.bincount(codes[keep], minlength=len(labels))
    judged = keep & rows.judged
    table = defect_table(codes[judged], rows.defect[judged], len(labels), k)
    poor = judged & (rows.grade == POOR_CODE)
    poor_table = defect_table(codes[poor], rows.defect[poor], len(labels), k)
    out: dict[str | None, DefectFigures] = {}
    for code in np.flatnonzero(scans):
        figures = DefectFigures(
            group=labels[int(code)],
            scans=int(scans[code]),
            judged=int(table[code].sum()),
            first={n: int(table[code, i]) for i, n in enumerate(names)},
            poor_judged=int(poor_table[code].sum()),
        )
        named = poor_table[code, :k]
        if named.size and named.max() > 0:
            top = int(np.argmax(named))  # ties: the first in vocabulary order
            figures.poor_top, figures.poor_top_scans = names[top], int(named[top])
        out[figures.group] = figures
    return out


def daily_defects(rows: ScoreRows, keep: NDArray[np.bool_]) -> list[DefectDay]:
    """Judged scans and their first defects per day among ``keep`` (days without a judged
    scan left out)."""
    judged = keep & rows.judged
    days = rows.day[judged]
    out: list[DefectDay] = []
    if days.size == 0:
        return out
    uniq, inverse = np.unique(days, return_inverse=True)
    table = defect_table(
        inverse.astype(np.int32), rows.defect[judged], uniq.size, len(rows.defect_names)
    )
    for i, ordinal in enumerate(uniq):
        first = {n: int(table[i, j]) for j, n in enumerate(rows.defect_names) if table[i, j]}
        out.append(DefectDay(date.fromordinal(int(ordinal)), int(table[i].sum()), first))
    return out


def daily_group_defects(
    rows: ScoreRows, keep: NDArray[np.bool_], dimension: str
) -> list[GroupDefectDay]:
    """Judged scans and their first defects per day and group of ``dimension`` among
    ``keep``, by day then group (pairs without a judged scan left out)."""
    require_dimension(dimension)
    codes, labels = rows.codes[dimension], rows.labels[dimension]
    judged = keep & rows.judged
    out: list[GroupDefectDay] = []
    if not judged.any():
        return out
    key = rows.day[judged] * (len(labels) + 1) + codes[judged]
    uniq, inverse = np.unique(key, return_inverse=True)
    names = rows.defect_names
    table = defect_table(inverse.astype(np.int32), rows.defect[judged], uniq.size, len(names))
    for i, k in enumerate(uniq):
        ordinal, code = divmod(int(k), len(labels) + 1)
        first = {n: int(table[i, j]) for j, n in enumerate(names) if table[i, j]}
        out.append(
            GroupDefectDay(date.fromordinal(ordinal), labels[code], int(table[i].sum()), first)
        )
    out.sort(key=lambda g: (g.day, g.group is None, g.group or ""))
    return out

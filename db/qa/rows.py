"""What every QA figure is computed from: the groupings (``--by``), the grades, the report
period, and the scored scans of a span of days as arrays (:class:`ScoreRows`, read once by
:func:`db.qa.queries.fetch_scores`).

A scan's ``day`` is its acquisition date by the scanner's clock, else the UTC date it was
received; periods are whole days, both ends included.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "DEFAULT_DAYS",
    "DEFECT",
    "DIMENSIONS",
    "GRADES",
    "GROUPINGS",
    "NOT_JUDGED",
    "NO_DEFECT",
    "Period",
    "ScoreRows",
    "require_dimension",
]

DEFAULT_DAYS = 30

# ``--by`` choice -> the view column it groups by (a fixed list: never user text in SQL)
DIMENSIONS: dict[str, str] = {
    "station": "station_name",
    "operator": "operator",
    "transducer": "transducer",
    "manufacturer": "manufacturer",
    "body_part": "body_part",
}

# ``--by defect``: the scan's first defect (not a view column: computed from ``first_defect``
# and whether the scan's model judges defects); its two groups that are not defect names
DEFECT = "defect"
NO_DEFECT = "(no defect)"
NOT_JUDGED = "(not judged)"
GROUPINGS = (*DIMENSIONS, DEFECT)

GRADES = ("good", "average", "poor")


def require_dimension(dimension: str) -> None:
    """Raise ValueError, naming the choices, unless ``dimension`` is one of GROUPINGS."""
    if dimension not in GROUPINGS:
        raise ValueError(f"unknown grouping {dimension!r}: expected one of {', '.join(GROUPINGS)}")


@dataclass(frozen=True)
class Period:
    """Whole days from ``since`` to ``until``, both included."""

    since: date
    until: date

    @property
    def days(self) -> int:
        return (self.until - self.since).days + 1

    def __str__(self) -> str:
        return f"{self.since.isoformat()} to {self.until.isoformat()}"


@dataclass
class ScoreRows:
    """The scored scans of a span of days, one array entry per scan. Group columns are
    integer codes into ``labels[dimension]``; ``grade`` indexes :data:`GRADES`;
    ``version`` indexes ``versions``; ``day`` holds ``date.toordinal()`` values.

    Defects: ``defect`` indexes ``defect_names`` (-1: no first defect, clean or not
    judged); ``judged`` is True where the scan's model version judges defects
    (``model_versions.defect_names`` not NULL). ``codes["defect"]`` groups by first defect
    (labels: the names, then :data:`NO_DEFECT` and :data:`NOT_JUDGED`)."""

    scan_id: NDArray[np.int64]
    day: NDArray[np.int64]
    score: NDArray[np.float64]
    grade: NDArray[np.int8]
    version: NDArray[np.int32]
    versions: list[str]
    codes: dict[str, NDArray[np.int32]]
    labels: dict[str, list[str | None]]
    defect: NDArray[np.int16]
    judged: NDArray[np.bool_]
    defect_names: list[str]

    def __len__(self) -> int:
        return int(self.score.size)

    def mask(
        self,
        *,
        since: date | None = None,
        until: date | None = None,
        model_version: str | None = None,
    ) -> NDArray[np.bool_]:
        """The scans of ``since``..``until`` scored by ``model_version`` (None: any)."""
        keep = np.ones(len(self), dtype=bool)
        if since is not None:
            keep &= self.day >= since.toordinal()
        if until is not None:
            keep &= self.day <= until.toordinal()
        if model_version is not None:
            code = self.versions.index(model_version) if model_version in self.versions else -1
            keep &= self.version == code
        return keep

    def version_counts(self, keep: NDArray[np.bool_]) -> dict[str, int]:
        """Scans per model version among ``keep``, most used first."""
        counts = np.bincount(self.version[keep], minlength=len(self.versions))
        pairs = [(v, int(n)) for v, n in zip(self.versions, counts, strict=True) if n]
        return dict(sorted(pairs, key=lambda kv: (-kv[1], kv[0])))

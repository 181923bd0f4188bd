"""Drift per defect: does one station, operator or transducer name one defect more often than
it used to? (called by :func:`db.qa.drift.detect_drift`, in the same run and the same
Bonferroni family as the score tests).

For every group with at least ``min_scans`` *judged* scans (scored by a model version that
judges defects) in both windows, and for every defect name the models judge except the
equipment defects (:data:`db.qa.equipment.EQUIPMENT_DEFECTS`: ``dead_elements`` is a probe
fault, reported by the equipment rule, not an operator's drift), the share of judged scans
whose first defect is that name is compared: recent share at least ``defect_rise`` above
the baseline share, and Fisher's exact test on the 2 x 2 table (that first defect / any
other outcome, by window) beats the corrected p-value. Every such (group, defect) pair is
one test, counted whether or not its rise is large enough to be computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from db.qa.defects import defect_table
from db.qa.equipment import EQUIPMENT_DEFECTS
from db.qa.rows import ScoreRows
from db.qa.stats import WindowStats, fisher_rise_p

__all__ = ["DefectWindows", "defect_findings", "defect_windows", "tested_defects"]


@dataclass(frozen=True)
class DefectWindows:
    """One group's judged scans and first-defect counts (per name) in both windows."""

    base_judged: int
    recent_judged: int
    base: tuple[int, ...]
    recent: tuple[int, ...]


# (defect, baseline share, recent share, rise, p-value)
DefectFinding = tuple[str, float, float, float, float]


def tested_defects(rows: ScoreRows) -> list[str]:
    """The defect names the drift check tests (equipment defects left out)."""
    return [n for n in rows.defect_names if n not in EQUIPMENT_DEFECTS]


def defect_windows(
    rows: ScoreRows,
    dimension: str,
    windows: tuple[NDArray[np.bool_], NDArray[np.bool_]],
    min_scans: int,
) -> dict[str | None, DefectWindows]:
    """The groups of ``dimension`` with at least ``min_scans`` judged scans in both
    windows (baseline, recent), with their first-defect counts."""
    codes, labels = rows.codes[dimension], rows.labels[dimension]
    k = len(rows.defect_names)
    tables = []
    for keep in windows:
        judged = keep & rows.judged
        tables.append(defect_table(codes[judged], rows.defect[judged], len(labels), k))
    base, recent = tables
    out: dict[str | None, DefectWindows] = {}
    for code, label in enumerate(labels):
        nb, nr = int(base[code].sum()), int(recent[code].sum())
        if min(nb, nr) >= min_scans:
            out[label] = DefectWindows(
                nb,
                nr,
                tuple(int(v) for v in base[code, :k]),
                tuple(int(v) for v in recent[code, :k]),
            )
    return out


def defect_findings(
    found: DefectWindows,
    names: Sequence[str],
    tested: Sequence[str],
    rise_needed: float,
    threshold: float,
) -> list[DefectFinding]:
    """The defects of ``tested`` whose share rose by ``rise_needed`` or more, with a
    one-sided Fisher p-value below ``threshold``."""
    out: list[DefectFinding] = []
    for name in tested:
        i = names.index(name)
        before = found.base[i] / found.base_judged
        now = found.recent[i] / found.recent_judged
        if now - before < rise_needed or found.recent[i] == 0:
            continue
        p = fisher_rise_p(
            WindowStats(found.base_judged, 0.0, 0.0, found.base[i]),
            WindowStats(found.recent_judged, 0.0, 0.0, found.recent[i]),
        )
        if p < threshold:
            out.append((name, before, now, now - before, p))
    return out

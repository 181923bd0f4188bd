"""The defect parts of ``usqa report`` as text: the first-defect shares per group, the
suspected probe faults, the defect columns of the CSV file and the defect list of one scan.
Rendering only; the figures come from :mod:`db.qa.defects` and :mod:`db.qa.equipment`.

Shares are over the scans whose model judges defects (the others are "not judged", never
counted as clean); every output says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from db.qa.defects import DefectFigures
from db.qa.equipment import EquipmentResult
from db.qa.report import QAReport
from db.qa.rows import DEFECT

__all__ = [
    "TOP_DEFECTS",
    "defect_csv_columns",
    "defect_csv_values",
    "defect_lines",
    "defects_cell",
    "equipment_text",
    "judged_note",
    "top_defects",
]

TOP_DEFECTS = 3  # first defects named per group in the terminal table


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def judged_note(report: QAReport) -> str:
    """What the defect shares are taken over, in one sentence."""
    o = report.defects.overall
    if o.judged == 0:
        return (
            "Defects: not judged (the model version that scored these scans has no defect "
            "head), so no defect shares."
        )
    missing = o.scans - o.judged
    tail = (
        f"; {missing} scored by a model that does not judge defects are left out" if missing else ""
    )
    return (
        f"Defects: share of the {o.judged} scans whose model judges defects that have each "
        f"first defect (the most probable one listed){tail}."
    )


def top_defects(f: DefectFigures, limit: int = TOP_DEFECTS) -> str:
    """``low_gain 23%, noise 5%``: the most frequent first defects of a group."""
    ranked = f.ranked()[:limit]
    return ", ".join(f"{name} {_pct(k / f.judged)}" for name, k in ranked) if ranked else "none"


def _poor_top(f: DefectFigures) -> str:
    if f.poor_top is None:
        return "-"
    return f"{f.poor_top} ({f.poor_top_scans} of {f.poor_judged} poor)"


def defect_lines(report: QAReport, label: str, names: Mapping[str | None, str]) -> list[str]:
    """The defect table: per group (``names``: group -> shown name, in table order) its
    judged scans, share without a defect, top first defects and the most frequent first
    defect of its poor scans, then the line of all scans."""
    from worker.report.text import table  # the terminal table layout

    lines = ["", judged_note(report)]
    d = report.defects
    if not d.judged:
        return lines
    header = [label, "Judged", "No defect", "Most frequent first defects", "Poor scans: most"]
    rows = []
    groups = {} if report.dimension == DEFECT else d.groups
    for group, shown in names.items():
        f = groups.get(group)
        if f is not None and f.judged:
            rows.append(_defect_row(shown, f))
    rows.append(_defect_row("All", d.overall))
    lines.extend(table(header, rows, left=(0, 3, 4)))
    return lines


def _defect_row(shown: str, f: DefectFigures) -> list[str]:
    return [
        shown,
        str(f.judged),
        _pct(f.no_defect / f.judged if f.judged else None),
        top_defects(f),
        _poor_top(f),
    ]


def equipment_text(result: EquipmentResult | None, *, empty_ok: bool = False) -> str:
    """One line per suspected probe fault; without any, one line saying so when
    ``empty_ok``, else nothing."""
    from worker.report.text import shown_text

    if result is None or not result.alerts:
        if not empty_ok or result is None:
            return ""
        return f"Equipment check: no probe shows {result.rule.defect} persistently."
    lines = [f"Suspected probe faults ({len(result.alerts)}): service, not training:"]
    lines.extend(f"  PROBE {shown_text(a.message())}" for a in result.alerts)
    return "\n".join(lines)


def defect_csv_columns(names: Sequence[str]) -> list[str]:
    """The defect columns appended to the CSV file (one share per defect name)."""
    return [
        "judged",
        "no_defect_share",
        *(f"{n}_share" for n in names),
        "poor_top_defect",
        "poor_top_defect_share",
    ]


def defect_csv_values(report: QAReport, group: str | None, *, overall: bool) -> dict[str, Any]:
    """The defect cells of one CSV row (empty where the group was not judged)."""
    d = report.defects
    f = d.overall if overall else None if report.dimension == DEFECT else d.groups.get(group)
    if f is None or not f.judged:
        return {}
    values = f.to_dict(d.names)
    out: dict[str, Any] = {
        "judged": f.judged,
        "no_defect_share": values["no_defect_share"],
        "poor_top_defect": f.poor_top,
        "poor_top_defect_share": values["poor_top_defect_share"],
    }
    out.update({f"{n}_share": values["first_defect_share"][n] for n in d.names})
    return out


def defects_cell(defects: Sequence[Mapping[str, Any]] | None) -> str:
    """A scan's listed defects, most probable first: ``low_gain 0.82, noise 0.61``."""
    if defects is None:
        return "not judged"
    if not defects:
        return "none"
    return ", ".join(f"{d['name']} {float(d['probability']):.2f}" for d in defects)

"""The per-group summary (``/summary``): the figures of ``usqa report`` for one period,
grouped by station, operator or transducer (``by``).

The same computation as the command (:func:`db.qa.build_report` with its default drift and
probe rules, drift checked over station, transducer and operator and the grouping): the same
period (``since``/``until``, else ``days`` days up to ``until``, else the last
:data:`~db.qa.DEFAULT_DAYS` days that have scans), the same model version (``model_version``;
default the version that scored the most recent scan, ``all`` mixes them), the same figures
and alerts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from flask import Blueprint, render_template, request
from werkzeug.exceptions import BadRequest

from db.qa import DEFAULT_DAYS, DriftRule, QAReport, build_report
from db.qa.defects import DefectFigures
from db.qa.equipment import ProbeRule
from db.qa.figures import GroupFigures
from db.qa.rows import DEFECT
from worker.commands.report import ALERT_DIMENSIONS
from worker.report.defect_text import equipment_text, judged_note, top_defects
from worker.report.text import DIMENSION_LABELS, group_label
from worker.web import params
from worker.web.context import audit, ledger

__all__ = ["GROUPINGS", "blueprint"]

GROUPINGS = ("station", "operator", "transducer")
DAYS_MAX = 3660

blueprint = Blueprint("summary", __name__)


@dataclass(frozen=True)
class Line:
    """One row of the summary table: a group's figures and its first defects."""

    label: str
    figures: GroupFigures
    defects: str | None


def _days(value: str) -> int:
    if not value.strip():
        return DEFAULT_DAYS
    if not value.strip().isdigit() or not 1 <= int(value) <= DAYS_MAX:
        raise BadRequest(f"days: {value[:20]!r} is not a number of days from 1 to {DAYS_MAX}")
    return int(value)


def _lines(report: QAReport) -> list[Line]:
    groups: dict[str | None, DefectFigures] = report.defects.groups
    judged = report.defects.judged

    def top(f: DefectFigures | None) -> str | None:
        return top_defects(f) if judged and f is not None and f.judged else None

    rows = [Line(group_label(g.group), g, top(groups.get(g.group))) for g in report.groups]
    rows.append(Line("All", report.overall, top(report.defects.overall)))
    return rows


@blueprint.route("/summary")
def summary() -> str:
    args = request.args
    by = params.choice(args, "by", GROUPINGS) or "station"
    since, until = params.day(args, "since"), params.day(args, "until")
    days = _days(args.get("days", ""))
    if since is None and until is not None:
        since = date.fromordinal(until.toordinal() - days + 1)
    version = params.text(args, "model_version")
    dims = [d for d in dict.fromkeys([*ALERT_DIMENSIONS, by]) if d != DEFECT]
    try:
        with ledger(readonly=True) as session:
            report = build_report(
                session,
                dimension=by,
                since=since,
                until=until,
                model_version=version,
                rule=DriftRule(),
                probe_rule=ProbeRule(),
                alert_dimensions=dims,
                now=datetime.now(UTC),
                default_days=days,
            )
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    with ledger() as session:
        period = "no scans" if report.period is None else str(report.period)
        model = report.model_version or "all"
        audit(session, "view_summary", detail=f"by {by}; {period}; model {model}")
    drift = report.drift.alerts if report.drift is not None else []
    return render_template(
        "summary.html",
        r=report,
        by=by,
        label=DIMENSION_LABELS[by],
        groupings={g: DIMENSION_LABELS[g] for g in GROUPINGS},
        lines=_lines(report),
        alerts=[a.message(DIMENSION_LABELS.get(a.dimension, a.dimension)) for a in drift],
        probes=[x for x in equipment_text(report.equipment).splitlines() if x.strip()],
        defects_note=judged_note(report) if report.has_scores else None,
        days=days,
        args=args,
    )

"""How well the model agrees with the reviewers (``/agreement``): the figures of
``usqa evaluate --reviews`` (:func:`db.qa.agreement.build_agreement`) per model version,
reviewer and station, operator or transducer (``by``), and between reviewers, each with the
count behind it and its 95 % bootstrap interval.

Parameters as the command's: ``model_version`` (default: every version, each apart),
``since``/``until`` (days the ratings were made, both included), ``by`` (default station).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from flask import Blueprint, render_template, request
from werkzeug.exceptions import BadRequest

from db.qa.agreement import GRADE_ORDER, OVERALL, Figure, build_agreement
from model.defects import DEFECTS
from worker.web import params
from worker.web.context import audit, ledger

__all__ = ["BOOTSTRAP_ROUNDS", "GROUPINGS", "blueprint", "figure"]

BOOTSTRAP_ROUNDS = 1000  # as `usqa evaluate --reviews` by default
GROUPINGS = {"station": "Station", "operator": "Operator", "transducer": "Transducer"}
LABELS = {OVERALL: "All ratings", "reviewer": "Reviewer", **GROUPINGS}

blueprint = Blueprint("agreement", __name__)


def figure(value: Figure, percent: bool = False) -> str:
    """``60% [28, 83]`` or ``0.52 [-0.20, 0.82]``; ``-`` when undefined."""
    if value.value is None:
        return "-"

    def shown(x: float) -> str:
        return f"{x * 100:.0f}" if percent else f"{x:.2f}"

    text = shown(value.value) + ("%" if percent else "")
    if value.low is not None and value.high is not None:
        text += f" [{shown(value.low)}, {shown(value.high)}]"
    return text


@blueprint.route("/agreement")
def agreement_page() -> str:
    args = request.args
    by = params.choice(args, "by", tuple(GROUPINGS)) or "station"
    since, until = params.day(args, "since"), params.day(args, "until")
    if since and until and until < since:
        raise BadRequest(f"the period starts ({since}) after it ends ({until})")
    version = params.text(args, "model_version")
    with ledger(readonly=True) as session:
        report = build_agreement(
            session,
            model_version=version,
            since=datetime.combine(since, time(), UTC) if since else None,
            until=datetime.combine(until + timedelta(days=1), time(), UTC) if until else None,
            by=by,
            rounds=BOOTSTRAP_ROUNDS,
            defects=DEFECTS,
        )
    with ledger() as session:
        shown = f"by {by}; model {version or 'every version'}; rated {since or '-'}..{until or '-'}"
        audit(session, "view_agreement", detail=shown)
    return render_template(
        "agreement.html",
        r=report,
        by=by,
        groupings=GROUPINGS,
        labels=LABELS,
        overall=OVERALL,
        grade_order=GRADE_ORDER,
        figure=figure,
        since=since,
        until=until,
        version=version or "",
    )

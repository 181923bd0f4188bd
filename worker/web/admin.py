"""The audit trail (``/audit``, admins only): the newest entries first, filtered by action,
account name or scan id."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from werkzeug.exceptions import BadRequest

from db import reviews
from db.reviews.audit import ACTIONS
from worker.web import params
from worker.web.auth import requires
from worker.web.context import audit, ledger

__all__ = ["LIMIT", "blueprint"]

LIMIT = 500

blueprint = Blueprint("admin", __name__)


@blueprint.route("/audit")
@requires("admin")
def audit_trail() -> str:
    args = request.args
    action = params.choice(args, "action", ACTIONS)
    name = params.text(args, "user")
    scan = args.get("scan", "").strip()
    if scan and not scan.isdigit():
        raise BadRequest(f"scan: {scan[:20]!r} is not a scan number")
    scan_id = int(scan) if scan else None
    with ledger() as session:
        entries = reviews.recent_entries(
            session, limit=LIMIT, action=action, user_name=name, scan_id=scan_id
        )
        shown = f"action={action or 'any'} user={name or 'any'} scan={scan or 'any'}"
        audit(session, "view_audit", detail=shown)
    return render_template(
        "audit.html", entries=entries, actions=ACTIONS, action=action, user=name, scan=scan,
        limit=LIMIT,
    )  # fmt: skip

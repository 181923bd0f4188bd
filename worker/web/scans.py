"""The scan list (``/scans``), one scan's page (``/scans/<id>``) and its rating
(``POST /scans/<id>/rate``, reviewers and admins).

A reviewer either agrees with the result shown (the model's grade and defects become
theirs) or gives the grade they would give and the defects they see, with an optional
comment; rating again replaces their earlier rating (:func:`db.reviews.save_rating`). The
rating records the model version whose result the page showed.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for
from werkzeug.exceptions import BadRequest, Forbidden, NotFound

from db import reviews
from db.models import GRADES
from db.qa.queries import scan_files
from db.reviews.browse import FilterChoices, filter_choices, scan_page
from db.reviews.scan import scan_detail
from model.defects import DEFECTS
from worker.web import params
from worker.web.auth import requires
from worker.web.context import audit, ledger, signed_in
from worker.web.frames import availability, strip_frames

__all__ = ["PER_PAGE", "blueprint"]

PER_PAGE = 50
CHOICES_SECONDS = 60.0  # the filter lists are read again at most this often

blueprint = Blueprint("scans", __name__)


def _choices() -> FilterChoices:
    """The filter lists, read from the ledger at most every :data:`CHOICES_SECONDS`."""
    cache = current_app.extensions.setdefault("usqa.choices", {"lock": threading.Lock()})
    with cache["lock"]:
        if cache.get("at", -math.inf) + CHOICES_SECONDS < time.monotonic():
            with ledger(readonly=True) as session:
                cache["value"] = filter_choices(session)
            cache["at"] = time.monotonic()
        found: FilterChoices = cache["value"]
    return found


@blueprint.route("/")
def index() -> Response:
    return redirect(url_for("scans.scan_list"), code=303)  # type: ignore[return-value]


@blueprint.route("/scans")
def scan_list() -> str:
    found = params.scan_filter(request.args)
    page = params.page_number(request.args)
    with ledger() as session:
        listed = scan_page(session, found, offset=(page - 1) * PER_PAGE, limit=PER_PAGE)
        audit(session, "view_scans", detail=f"{params.describe(found)}; page {page}")
    pages = max(1, math.ceil(listed.total / PER_PAGE))
    kept: dict[str, Any] = {k: v for k, v in request.args.items() if k != "page" and v}
    return render_template(
        "scans.html",
        rows=listed.rows,
        total=listed.total,
        page=page,
        pages=pages,
        newer=url_for("scans.scan_list", **kept, page=page - 1) if page > 1 else None,
        older=url_for("scans.scan_list", **kept, page=page + 1) if page < pages else None,
        f=found,
        choices=_choices(),
        grades=GRADES,
        defects=DEFECTS,
    )


@blueprint.route("/scans/<int:scan_id>")
def scan_view(scan_id: int) -> str:
    signed = signed_in()
    with ledger() as session:
        detail = scan_detail(session, scan_id)
        if detail is None:
            raise NotFound(f"There is no scan {scan_id} in the ledger.")
        ratings = reviews.ratings_for_scan(session, scan_id)
        files = scan_files(session, [scan_id]) if detail.result is not None else {}
        audit(session, "view_scan", scan_id=scan_id)
    unavailable = availability(files[scan_id]) if scan_id in files else None
    shown = detail.result is not None and unavailable is None
    return render_template(
        "scan.html",
        d=detail,
        ratings=ratings,
        mine=next((r for r in ratings if r.reviewer == signed.name), None),
        frames=strip_frames(detail.frame_count) if shown else [],
        unavailable=unavailable,
        overlay=shown and request.args.get("overlay") == "1",
        saved=request.args.get("saved") == "1",
        can_rate=detail.result is not None and reviews.role_allows(signed.role, "reviewer"),
        grades=GRADES,
        defects=DEFECTS,
    )


def _rating_detail(rating: reviews.Rating) -> str:
    how = "agrees with the model" if rating.agrees else f"model said {rating.model_grade}"
    seen = ", ".join(rating.defects) or "none"
    return f"grade {rating.grade} ({how}, model {rating.model_version}); defects {seen}"


@blueprint.route("/scans/<int:scan_id>/rate", methods=["POST"])
@requires("reviewer")
def rate(scan_id: int) -> Response:
    form = request.form
    action = form.get("action", "")
    if action not in ("agree", "rate"):
        raise BadRequest("Use the form's buttons: agree with the model, or save your rating.")
    agrees = action == "agree"
    try:
        with ledger() as session:
            account = reviews.find_user(session, signed_in().name)
            if account is None:
                raise Forbidden("Your account no longer exists.")
            rating = reviews.save_rating(
                session,
                scan_id=scan_id,
                reviewer=account,
                agrees=agrees,
                grade=None if agrees else (form.get("grade") or None),
                defects=() if agrees else form.getlist("defect"),
                comment=form.get("comment", ""),
                shown_version=form.get("shown_version", "").strip()[:64] or None,
                vocabulary=DEFECTS,
            )
            audit(session, "rate", scan_id=scan_id, detail=_rating_detail(rating))
    except reviews.RatingError as exc:
        raise BadRequest(f"The rating was not saved: {exc}.") from None
    target = url_for("scans.scan_view", scan_id=scan_id, saved=1) + "#ratings"
    return redirect(target, code=303)  # type: ignore[return-value]

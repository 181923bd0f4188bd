"""A scored scan's pictures: ``/scans/<id>/frames/<n>.png`` (frame ``n`` of the page's
strip, cut to the B-mode region) and ``/scans/<id>/overlay.png`` (the saliency overlay of
its first frame, computed on request). Each view is audited (``view_image``,
``view_overlay``), shown or not.

A picture that cannot be shown is a grey image that says why, with status 410 (the file was
moved away, deleted or changed since it was scored), 404 (no such scored scan or frame, or
the file cannot be read) or 503 (no model for the overlay).
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from db.reviews.scan import ScoredFile, scored_file
from worker.web.context import audit, config, ledger
from worker.web.frames import Picture, first_frame, frame_picture, placeholder
from worker.web.overlay import Overlays

__all__ = ["blueprint"]

blueprint = Blueprint("images", __name__)

NO_SCAN = "no scored scan with this number"


def _scored(scan_id: int) -> ScoredFile | None:
    with ledger(readonly=True) as session:
        return scored_file(session, scan_id)


def _answer(picture: Picture, scan_id: int, action: str, what: str) -> Response:
    shown = picture.png is not None
    with ledger() as session:
        detail = what if shown else f"{what}: not shown, {picture.note}"
        audit(session, action, scan_id=scan_id, detail=detail)
    if picture.png is not None:
        return Response(picture.png, mimetype="image/png")
    return Response(placeholder(picture.note), status=picture.status, mimetype="image/png")


@blueprint.route("/scans/<int:scan_id>/frames/<int:index>.png")
def frame(scan_id: int, index: int) -> Response:
    found = _scored(scan_id)
    if found is None:
        picture = Picture(None, 404, NO_SCAN)
    else:
        picture = frame_picture(found.file, config().read_options, found.frame_count, index)
    return _answer(picture, scan_id, "view_image", f"frame {index}")


def _overlays() -> Overlays:
    found: Overlays = current_app.extensions["usqa.overlays"]
    return found


@blueprint.route("/scans/<int:scan_id>/overlay.png")
def overlay(scan_id: int) -> Response:
    found = _scored(scan_id)
    if found is None:
        picture = Picture(None, 404, NO_SCAN)
    else:
        shown, picture = first_frame(found.file, config().read_options)
        if shown is not None:
            png, legend = _overlays().make(shown)
            picture = Picture(png) if png is not None else Picture(None, 503, legend)
    return _answer(picture, scan_id, "view_overlay", "saliency overlay of the first frame")

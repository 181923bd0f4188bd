"""The ratings behind ``usqa export-reviews``: each rated scan with every reviewer's grade and
defects, where its file is now and what its content was when it was received.

Read-only: takes an open session and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.ledger.lookups import file_location, has_score
from db.models import Review, Scan, User
from db.reviews.ratings import _review_defects

__all__ = ["ReviewedScan", "ReviewerRating", "reviewed_scans"]


@dataclass(frozen=True)
class ReviewerRating:
    """One reviewer's judgement of a scan: the grade they give and the defects they see."""

    reviewer: str
    grade: str
    defects: frozenset[str]


@dataclass(frozen=True)
class ReviewedScan:
    """A rated scan: its ratings (one per reviewer, by reviewer name); ``location``, the
    path its file should be at now (:func:`db.ledger.lookups.file_location`; None when the
    after-scoring policy deleted it or found it missing, ``disposition`` says which), and
    the size and sha256 recorded when it was received, so that only that content is read."""

    scan_id: int
    ratings: tuple[ReviewerRating, ...]
    location: str | None
    disposition: str | None
    size_bytes: int
    sha256: str


def reviewed_scans(
    session: Session,
    *,
    model_version: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[ReviewedScan]:
    """Every scan with a rating made in [since, until), by scan id; with
    ``model_version``, only the scans that version scored (as
    :func:`db.reviews.ratings.rated_scans` selects them). Ratings outside the period do
    not count."""
    query = (
        select(Review, User.name, Scan)
        .join(User, User.id == Review.reviewer_id)
        .join(Scan, Scan.id == Review.scan_id)
        .order_by(Review.scan_id, User.name)
    )
    if model_version:
        query = query.where(has_score(model_version))
    if since is not None:
        query = query.where(Review.rated_at >= since)
    if until is not None:
        query = query.where(Review.rated_at < until)
    rows = session.execute(query).all()
    defects = _review_defects(session, {review.id for review, _, _ in rows})
    ratings: dict[int, list[ReviewerRating]] = {}
    scans: dict[int, Scan] = {}
    for review, name, scan in rows:
        ratings.setdefault(scan.id, []).append(
            ReviewerRating(name, review.grade, frozenset(defects[review.id]))
        )
        scans[scan.id] = scan
    return [
        ReviewedScan(
            scan_id=scan_id,
            ratings=tuple(ratings[scan_id]),
            location=file_location(scan),
            disposition=scan.disposition,
            size_bytes=scan.size_bytes,
            sha256=scan.sha256,
        )
        for scan_id, scan in scans.items()
    ]

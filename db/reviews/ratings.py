"""Reviewers' ratings (tables ``reviews`` and ``review_defects``), and the rated scans with
what each model version said of them.

A reviewer either agrees with the result they were shown (the model's grade and defects
become theirs) or gives the grade they would give and the defects they see. Rating a scan
again replaces that reviewer's earlier rating (the audit trail keeps each one). Defect names
are checked against the vocabulary the caller passes (the worker passes
``model.defects.DEFECTS``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.models import (
    GRADES,
    ModelVersion,
    Review,
    ReviewDefect,
    Scan,
    ScanDefect,
    ScanScore,
    User,
    utcnow,
)
from worker.errors import ConfigError

__all__ = ["RatedScan", "Rating", "RatingError", "rated_scans", "ratings_for_scan", "save_rating"]

COMMENT_MAX = 2000


class RatingError(ConfigError):
    """A rating that cannot be stored: an unknown grade or defect, no result to agree with."""


@dataclass(frozen=True)
class Rating:
    """One reviewer's rating of a scan, as stored."""

    review_id: int
    scan_id: int
    reviewer: str
    agrees: bool
    grade: str
    defects: tuple[str, ...]
    comment: str | None
    model_version: str | None
    model_score: float | None
    model_grade: str | None
    rated_at: datetime


@dataclass(frozen=True)
class RatedScan:
    """A rating beside one model version's result for the same scan: the unit of every
    agreement figure. ``model_defects_judged`` is False for a version without a defect head
    (its empty defect list means "not judged", not "clean"). ``model_first_defect``: the
    most probable defect it listed (``no_signal`` first makes the grade poor whatever the
    score, which calibration must know)."""

    review_id: int
    scan_id: int
    reviewer: str
    grade: str
    defects: frozenset[str]
    agrees: bool
    rated_at: datetime
    station: str | None
    operator: str | None
    transducer: str | None
    model_version: str
    model_score: float
    model_grade: str
    model_defects: frozenset[str]
    model_defects_judged: bool
    model_first_defect: str | None = None


def _model_defects(session: Session, scan_id: int, version: str) -> tuple[str, ...]:
    rows = session.scalars(
        select(ScanDefect.defect)
        .where(ScanDefect.scan_id == scan_id, ScanDefect.model_version == version)
        .order_by(ScanDefect.rank)
    )
    return tuple(rows)


def _checked(
    grade: str | None, defects: Collection[str], vocabulary: Collection[str] | None
) -> tuple[str | None, tuple[str, ...]]:
    if grade is not None and grade not in GRADES:
        raise RatingError(f"grade {grade!r}: use one of {', '.join(GRADES)}")
    unknown = sorted(set(defects) - set(vocabulary)) if vocabulary is not None else []
    if unknown:
        raise RatingError(f"unknown defect {', '.join(unknown)}: use the defect names of usqa")
    return grade, tuple(sorted(set(defects)))


def save_rating(
    session: Session,
    *,
    scan_id: int,
    reviewer: User,
    agrees: bool,
    grade: str | None = None,
    defects: Collection[str] = (),
    comment: str | None = None,
    shown_version: str | None = None,
    vocabulary: Collection[str] | None = None,
    now: datetime | None = None,
) -> Rating:
    """Store ``reviewer``'s rating of scan ``scan_id``, replacing theirs if any.

    ``shown_version``: the model version whose result the reviewer saw (None: the one that
    scored the scan last). ``agrees``: take that result's grade and defects; otherwise
    ``grade`` is required and ``defects`` are the ones the reviewer sees."""
    grade, picked = _checked(grade, defects, vocabulary)
    scan = session.get(Scan, scan_id)
    if scan is None:
        raise RatingError(f"scan {scan_id} is not in the ledger")
    version = shown_version or scan.model_version
    shown = (
        session.scalars(
            select(ScanScore).where(
                ScanScore.scan_id == scan_id, ScanScore.model_version == version
            )
        ).first()
        if version
        else None
    )
    if agrees:
        if shown is None:
            raise RatingError(f"scan {scan_id} has no score to agree with: give a grade")
        grade, picked = shown.grade, _model_defects(session, scan_id, shown.model_version)
    elif grade is None:
        raise RatingError("give the grade you would give, or agree with the model's")
    text = (comment or "").strip()[:COMMENT_MAX] or None
    review = session.scalars(
        select(Review).where(Review.scan_id == scan_id, Review.reviewer_id == reviewer.id)
    ).first()
    if review is None:
        review = Review(scan_id=scan_id, reviewer_id=reviewer.id)
        session.add(review)
    review.agrees = agrees
    review.grade = grade
    review.comment = text
    review.model_version = shown.model_version if shown else None
    review.model_score = shown.score if shown else None
    review.model_grade = shown.grade if shown else None
    review.rated_at = now or utcnow()
    session.flush()
    session.execute(delete(ReviewDefect).where(ReviewDefect.review_id == review.id))
    session.add_all(ReviewDefect(review_id=review.id, defect=name) for name in picked)
    session.flush()
    return Rating(
        review.id,
        scan_id,
        reviewer.name,
        agrees,
        grade,
        picked,
        text,
        review.model_version,
        review.model_score,
        review.model_grade,
        review.rated_at,
    )


def _review_defects(session: Session, review_ids: Collection[int]) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {rid: set() for rid in review_ids}
    if review_ids:
        for rid, name in session.execute(
            select(ReviewDefect.review_id, ReviewDefect.defect).where(
                ReviewDefect.review_id.in_(list(review_ids))
            )
        ):
            found[rid].add(name)
    return found


def ratings_for_scan(session: Session, scan_id: int) -> list[Rating]:
    """Every rating of one scan, oldest first."""
    rows = session.execute(
        select(Review, User.name)
        .join(User, User.id == Review.reviewer_id)
        .where(Review.scan_id == scan_id)
        .order_by(Review.rated_at, Review.id)
    ).all()
    defects = _review_defects(session, [r.id for r, _ in rows])
    return [
        Rating(
            r.id,
            r.scan_id,
            name,
            r.agrees,
            r.grade,
            tuple(sorted(defects[r.id])),
            r.comment,
            r.model_version,
            r.model_score,
            r.model_grade,
            r.rated_at,
        )
        for r, name in rows
    ]


def rated_scans(
    session: Session,
    *,
    model_version: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    reviewers: Sequence[str] | None = None,
) -> list[RatedScan]:
    """Every rating beside every model version's result for the same scan (one version
    when ``model_version`` is given), rated in [since, until), by scan, reviewer, version."""
    query = (
        select(Review, User.name, Scan, ScanScore, ModelVersion.defect_names)
        .join(User, User.id == Review.reviewer_id)
        .join(Scan, Scan.id == Review.scan_id)
        .join(ScanScore, ScanScore.scan_id == Review.scan_id)
        .join(ModelVersion, ModelVersion.version == ScanScore.model_version)
        .order_by(Review.scan_id, User.name, ScanScore.model_version)
    )
    if model_version:
        query = query.where(ScanScore.model_version == model_version)
    if since is not None:
        query = query.where(Review.rated_at >= since)
    if until is not None:
        query = query.where(Review.rated_at < until)
    if reviewers:
        query = query.where(User.name.in_(list(reviewers)))
    rows = session.execute(query).all()
    defects = _review_defects(session, {r.id for r, *_ in rows})
    model_defects: dict[tuple[int, str], set[str]] = {}
    scan_ids = {r.scan_id for r, *_ in rows}
    if scan_ids:
        for sid, version, name in session.execute(
            select(ScanDefect.scan_id, ScanDefect.model_version, ScanDefect.defect).where(
                ScanDefect.scan_id.in_(list(scan_ids))
            )
        ):
            model_defects.setdefault((sid, version), set()).add(name)
    return [
        RatedScan(
            review_id=review.id,
            scan_id=review.scan_id,
            reviewer=name,
            grade=review.grade,
            defects=frozenset(defects[review.id]),
            agrees=review.agrees,
            rated_at=review.rated_at,
            station=scan.station_name,
            operator=scan.operator,
            transducer=scan.transducer,
            model_version=score.model_version,
            model_score=score.score,
            model_grade=score.grade,
            model_defects=frozenset(model_defects.get((review.scan_id, score.model_version), ())),
            model_defects_judged=judged is not None,
            model_first_defect=score.first_defect,
        )
        for review, name, scan, score, judged in rows
    ]

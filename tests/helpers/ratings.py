"""Reviewers' ratings for the agreement and calibration tests: :class:`RatedScan` rows made
in code (no database), and ratings written to a seeded ledger through ``db.reviews``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import db
from db import reviews
from db.reviews import RatedScan
from model.defects import DEFECTS

RATED_AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def graded(score: float, good: float = 80.0, average: float = 45.0) -> str:
    """The grade of ``score`` under thresholds ``good`` and ``average``."""
    return "good" if score >= good else "average" if score >= average else "poor"


def rated(
    review_id: int,
    scan_id: int,
    reviewer: str,
    grade: str,
    score: float,
    model_grade: str,
    *,
    defects: Sequence[str] = (),
    model_defects: Sequence[str] = (),
    judged: bool = True,
    station: str | None = "US-1",
    version: str = "v1",
    agrees: bool = False,
) -> RatedScan:
    """One rating beside one model version's result (first defect: the first listed)."""
    return RatedScan(
        review_id=review_id,
        scan_id=scan_id,
        reviewer=reviewer,
        grade=grade,
        defects=frozenset(defects),
        agrees=agrees,
        rated_at=RATED_AT,
        station=station,
        operator=None,
        transducer=None,
        model_version=version,
        model_score=score,
        model_grade=model_grade,
        model_defects=frozenset(model_defects),
        model_defects_judged=judged,
        model_first_defect=model_defects[0] if model_defects else None,
    )


def rate(
    url: str,
    reviewer: str,
    grades: Mapping[int, str | None],
    *,
    defects: Mapping[int, Sequence[str]] | None = None,
    now: datetime | None = None,
) -> None:
    """``reviewer`` (an account made on first use) rates each scan of ``grades``: a grade,
    or None to accept the model's result as shown; ``defects``: the ones they see."""
    with db.session_scope(url) as s:
        user = reviews.find_user(s, reviewer) or reviews.add_user(
            s, reviewer, "reviewer", "argon2-hash-not-used-in-these-tests"
        )
        for scan_id, grade in grades.items():
            reviews.save_rating(
                s,
                scan_id=scan_id,
                reviewer=user,
                agrees=grade is None,
                grade=grade,
                defects=(defects or {}).get(scan_id, ()),
                vocabulary=DEFECTS,
                now=now,
            )

"""What the review page's scan list reads: the scored scans of a period filtered by station,
operator, transducer, grade and defect, newest first and a page at a time; the choices of
those filters; and whether the ledger answers at all (one scan's page: :mod:`db.reviews.scan`).

A scan's result is that of the model version of its outcome (``scans.model_version``), as in
the QA views. The period is whole days of the scan's ``day`` (docs/sql.md): its acquisition
date by the scanner's clock, else the UTC date it was received. Nothing here returns a path,
a file name, a patient id hash, the institution or a DICOM UID: the page shows none of them.
Read-only; takes an open session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

from db.models import SCORED, ModelVersion, Review, Scan, ScanScore, User
from db.queries import lists_defect

__all__ = [
    "FilterChoices",
    "ScanFilter",
    "ScanPage",
    "ScanRow",
    "filter_choices",
    "ledger_answers",
    "scan_page",
]

CHOICES_MAX = 500  # the most values one filter list offers
Q = TypeVar("Q", bound=Select)


@dataclass(frozen=True)
class ScanFilter:
    """Which scored scans to list; None: any. ``defect``: listed at any rank."""

    since: date | None = None
    until: date | None = None
    station: str | None = None
    operator: str | None = None
    transducer: str | None = None
    grade: str | None = None
    defect: str | None = None


@dataclass(frozen=True)
class ScanRow:
    """One line of the list. ``acquired_at`` is the scanner's wall-clock time (naive)."""

    scan_id: int
    received_at: datetime
    acquired_at: datetime | None
    station: str | None
    transducer: str | None
    operator: str | None
    score: float
    grade: str
    first_defect: str | None
    defects_judged: bool
    ratings: int


@dataclass(frozen=True)
class ScanPage:
    """One page of the list and how many scans match in all."""

    rows: list[ScanRow]
    total: int


@dataclass(frozen=True)
class FilterChoices:
    """The values seen among scored scans, sorted (at most :data:`CHOICES_MAX` each)."""

    stations: list[str] = field(default_factory=list)
    operators: list[str] = field(default_factory=list)
    transducers: list[str] = field(default_factory=list)


def _in_period(since: date | None, until: date | None) -> list[ColumnElement[bool]]:
    """The scan's day in [since, until]: by acquisition time when the file has one (naive,
    the scanner's clock), else by the UTC time received; answered from both indexes."""
    acquired: list[ColumnElement[bool]] = [Scan.acquisition_datetime.is_not(None)]
    received: list[ColumnElement[bool]] = [Scan.acquisition_datetime.is_(None)]
    if since is not None:
        acquired.append(Scan.acquisition_datetime >= datetime.combine(since, time()))
        received.append(Scan.received_at >= datetime.combine(since, time(), UTC))
    if until is not None and until < date.max:
        end = until + timedelta(days=1)
        acquired.append(Scan.acquisition_datetime < datetime.combine(end, time()))
        received.append(Scan.received_at < datetime.combine(end, time(), UTC))
    if len(acquired) == 1:
        return []
    return [or_(and_(*acquired), and_(*received))]


def _filtered(query: Q, f: ScanFilter) -> Q:
    query = query.join(
        ScanScore,
        and_(ScanScore.scan_id == Scan.id, ScanScore.model_version == Scan.model_version),
    ).where(Scan.status == SCORED, *_in_period(f.since, f.until))
    for column, value in (
        (Scan.station_name, f.station),
        (Scan.operator, f.operator),
        (Scan.transducer, f.transducer),
        (ScanScore.grade, f.grade),
    ):
        if value is not None:
            query = query.where(column == value)
    if f.defect is not None:
        query = query.where(lists_defect(f.defect))
    return query


def scan_page(session: Session, f: ScanFilter, *, offset: int = 0, limit: int = 50) -> ScanPage:
    """The scored scans matching ``f``, newest (highest scan id) first, ``limit`` from
    ``offset``, with the number of ratings of each."""
    total = int(session.scalar(_filtered(select(func.count(Scan.id)), f)) or 0)
    query = (
        _filtered(select(Scan, ScanScore, ModelVersion.defect_names), f)
        .join(ModelVersion, ModelVersion.version == ScanScore.model_version)
        .order_by(Scan.id.desc())
        .offset(max(0, offset))
        .limit(max(1, limit))
    )
    found = session.execute(query).all()
    ids = [scan.id for scan, _, _ in found]
    counts: dict[int, int] = {}
    if ids:
        counts = {
            int(sid): int(n)
            for sid, n in session.execute(
                select(Review.scan_id, func.count())
                .where(Review.scan_id.in_(ids))
                .group_by(Review.scan_id)
            ).all()
        }
    rows = [
        ScanRow(
            scan_id=scan.id,
            received_at=scan.received_at,
            acquired_at=scan.acquisition_datetime,
            station=scan.station_name,
            transducer=scan.transducer,
            operator=scan.operator,
            score=float(score.score),
            grade=score.grade,
            first_defect=score.first_defect,
            defects_judged=names is not None,
            ratings=counts.get(scan.id, 0),
        )
        for scan, score, names in found
    ]
    return ScanPage(rows, total)


def filter_choices(session: Session) -> FilterChoices:
    """The stations, operators and transducers of the scored scans."""

    def values(column: Any) -> list[str]:
        query = (
            select(column)
            .where(Scan.status == SCORED, column.is_not(None))
            .distinct()
            .order_by(column)
            .limit(CHOICES_MAX)
        )
        return [str(v) for v in session.scalars(query)]

    return FilterChoices(values(Scan.station_name), values(Scan.operator), values(Scan.transducer))


def ledger_answers(session: Session) -> bool:
    """Whether the ledger answers a query of the review page's tables (for /healthz)."""
    session.execute(select(User.id).limit(1)).all()
    return True

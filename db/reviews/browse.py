"""What the review page reads of the scans: the scored scans of a period filtered by station,
operator, transducer, grade and defect, newest first and a page at a time; the choices of
those filters; everything one scan's page shows; the file behind its pictures; and whether
the ledger answers at all.

A scan's result is that of the model version of its outcome (``scans.model_version``), as in
the QA views; its other versions' results are listed apart. The period is whole days of the
scan's ``day`` (docs/sql.md): its acquisition date by the scanner's clock, else the UTC date
it was received. Nothing here returns a path (but :func:`scored_file`, to read the frames
from), a file name, a patient id hash, the institution or a DICOM UID: the page shows none
of them. Read-only; takes an open session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement

from db.models import SCORED, FrameScore, ModelVersion, Review, Scan, ScanDefect, ScanScore, User
from db.qa.queries import ScannedFile, scan_files
from db.queries import scan_defects

__all__ = [
    "FilterChoices",
    "Result",
    "ScanDetail",
    "ScanFilter",
    "ScanPage",
    "ScanRow",
    "ScoredFile",
    "filter_choices",
    "ledger_answers",
    "scan_detail",
    "scan_page",
    "scored_file",
]

CHOICES_MAX = 500
Q = TypeVar("Q", bound=Select)  # the most values one filter list offers


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


@dataclass(frozen=True)
class Result:
    """One model version's result for a scan. ``defects_judged``: the version has a defect
    head (otherwise no defect list means "not judged", not "clean")."""

    model_version: str
    score: float
    grade: str
    first_defect: str | None
    mean_score: float
    min_score: float
    p10_score: float
    frames_scored: int
    aggregate: str
    scored_at: datetime
    defects_judged: bool


@dataclass(frozen=True)
class ScanDetail:
    """Everything the scan page shows. ``result`` is the current one (None: not scored);
    ``defects`` its listed defects as ``{name, probability, frames}`` (most probable
    first); ``frame_scores`` ``(frame index, score, first defect)`` of its scored frames;
    ``other_results`` the other model versions' results, newest first."""

    scan_id: int
    status: str
    reason: str | None
    received_at: datetime
    acquired_at: datetime | None
    kind: str | None
    modality: str | None
    manufacturer: str | None
    model_name: str | None
    station: str | None
    transducer: str | None
    operator: str | None
    body_part: str | None
    frame_count: int | None
    rows: int | None
    columns: int | None
    burned_in_annotation: str | None
    disposition: str | None
    result: Result | None
    defects: list[dict[str, Any]]
    frame_scores: list[tuple[int, float, str | None]]
    other_results: list[Result]


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


def _lists(defect: str) -> ColumnElement[bool]:
    return (
        select(ScanDefect.scan_id)
        .where(
            ScanDefect.scan_id == Scan.id,
            ScanDefect.model_version == Scan.model_version,
            ScanDefect.defect == defect,
        )
        .exists()
    )


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
        query = query.where(_lists(f.defect))
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


def _result(score: ScanScore, names: str | None) -> Result:
    return Result(
        model_version=score.model_version,
        score=float(score.score),
        grade=score.grade,
        first_defect=score.first_defect,
        mean_score=float(score.mean_score),
        min_score=float(score.min_score),
        p10_score=float(score.p10_score),
        frames_scored=int(score.frames_scored),
        aggregate=score.aggregate,
        scored_at=score.scored_at,
        defects_judged=names is not None,
    )


def scan_detail(session: Session, scan_id: int) -> ScanDetail | None:
    """What the page of scan ``scan_id`` shows (None: no such scan)."""
    scan = session.get(Scan, scan_id)
    if scan is None:
        return None
    results = session.execute(
        select(ScanScore, ModelVersion.defect_names)
        .join(ModelVersion, ModelVersion.version == ScanScore.model_version)
        .where(ScanScore.scan_id == scan_id)
        .order_by(ScanScore.scored_at.desc(), ScanScore.id.desc())
    ).all()
    current = next(
        (_result(s, n) for s, n in results if s.model_version == scan.model_version), None
    )
    if scan.status != SCORED:
        current = None
    others = [
        _result(s, n)
        for s, n in results
        if current is None or s.model_version != current.model_version
    ]
    frames: list[tuple[int, float, str | None]] = []
    if current is not None:
        frames = [
            (int(r.frame_index), float(r.score), r.first_defect)
            for r in session.scalars(
                select(FrameScore)
                .where(
                    FrameScore.scan_id == scan_id,
                    FrameScore.model_version == current.model_version,
                )
                .order_by(FrameScore.frame_index)
            )
        ]
    listed = scan_defects(session, [scan_id]).get(scan_id, []) if current is not None else []
    return ScanDetail(
        scan_id=scan.id,
        status=scan.status,
        reason=scan.reason,
        received_at=scan.received_at,
        acquired_at=scan.acquisition_datetime,
        kind=scan.kind,
        modality=scan.modality,
        manufacturer=scan.manufacturer,
        model_name=scan.model_name,
        station=scan.station_name,
        transducer=scan.transducer,
        operator=scan.operator,
        body_part=scan.body_part,
        frame_count=scan.frame_count,
        rows=scan.rows,
        columns=scan.columns,
        burned_in_annotation=scan.burned_in_annotation,
        disposition=scan.disposition,
        result=current,
        defects=[dict(d) for d in listed],
        frame_scores=frames,
        other_results=others,
    )


@dataclass(frozen=True)
class ScoredFile:
    """A scored scan's file (its known locations, recorded size and sha256) and its frame
    count, for the pictures of its page. Never shown."""

    file: ScannedFile
    frame_count: int | None


def scored_file(session: Session, scan_id: int) -> ScoredFile | None:
    """The file of scan ``scan_id`` if the scan is scored (None otherwise)."""
    scan = session.get(Scan, scan_id)
    if scan is None or scan.status != SCORED:
        return None
    found = scan_files(session, [scan_id]).get(scan_id)
    return None if found is None else ScoredFile(found, scan.frame_count)


def ledger_answers(session: Session) -> bool:
    """Whether the ledger answers a query of the review page's tables (for /healthz)."""
    session.execute(select(User.id).limit(1)).all()
    return True

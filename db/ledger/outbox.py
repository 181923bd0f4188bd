"""The results outbox (table ``result_outbox``): which structured reports wait to be
delivered, claimed by one delivering process at a time, and what became of each.

A row is queued in the transaction that scores a DICOM scan (:func:`queue_results`, called
by the scoring path for each destination it is configured with), so a score and its report
are recorded together or not at all. A delivering process claims due rows with one guarded
UPDATE (:func:`claim_due`: a row is taken only while ``pending``, due and not claimed by a
live claim), reads what the report needs (:func:`report_facts`) and records the result
(:func:`mark_sent`, :func:`mark_retry`, :func:`mark_failed`), each guarded by its claim
token so a process whose claim expired cannot overwrite another's result. Every function
takes an open session and never commits.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from db.models import (
    OUTBOX_FAILED,
    OUTBOX_PENDING,
    OUTBOX_SENT,
    OUTBOX_STATES,
    ResultOutbox,
    Scan,
    ScanDefect,
    ScanScore,
    utcnow,
)

__all__ = [
    "OutboxSummary",
    "ReportFacts",
    "claim_due",
    "mark_failed",
    "mark_retry",
    "mark_sent",
    "outbox_summary",
    "queue_results",
    "report_facts",
]

DICOM_KIND = "dicom"  # scans.kind of a DICOM file: only those get a report


def queue_results(
    session: Session,
    scan_ids: Collection[int],
    model_version: str,
    destinations: Sequence[str],
    now: datetime | None = None,
) -> int:
    """Queue one ``pending`` row per DICOM scan of ``scan_ids`` and destination, unless
    that scan, version and destination has one already. Returns the rows added."""
    if not scan_ids or not destinations:
        return 0
    now = now or utcnow()
    dicom = session.scalars(
        select(Scan.id).where(Scan.id.in_(list(scan_ids)), Scan.kind == DICOM_KIND)
    ).all()
    if not dicom:
        return 0
    have = set(
        session.execute(
            select(ResultOutbox.scan_id, ResultOutbox.destination).where(
                ResultOutbox.scan_id.in_(dicom), ResultOutbox.model_version == model_version
            )
        ).all()
    )
    rows = [
        ResultOutbox(
            scan_id=scan_id,
            model_version=model_version,
            destination=dest,
            state=OUTBOX_PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        for scan_id in sorted(dicom)
        for dest in dict.fromkeys(destinations)
        if (scan_id, dest) not in have
    ]
    session.add_all(rows)
    session.flush()
    return len(rows)


def _claimable(destinations: Sequence[str], now: datetime) -> list[ColumnElement[bool]]:
    return [
        ResultOutbox.state == OUTBOX_PENDING,
        ResultOutbox.destination.in_(list(destinations)),
        ResultOutbox.next_attempt_at <= now,
        or_(ResultOutbox.claimed_until.is_(None), ResultOutbox.claimed_until < now),
    ]


def claim_due(
    session: Session,
    destinations: Sequence[str],
    token: str,
    *,
    lease_seconds: float,
    limit: int = 20,
    now: datetime | None = None,
) -> list[ResultOutbox]:
    """Claim up to ``limit`` due ``pending`` rows for ``destinations`` (oldest due first)
    for ``lease_seconds``, and return them. The guard is repeated in the UPDATE itself, so
    of two processes racing for a row only one gets it."""
    if not destinations:
        return []
    now = now or utcnow()
    guard = _claimable(destinations, now)
    due = (
        select(ResultOutbox.id)
        .where(*guard)
        .order_by(ResultOutbox.next_attempt_at, ResultOutbox.id)
        .limit(limit)
    )
    ids = list(session.scalars(due).all())
    if not ids:
        return []
    session.execute(
        update(ResultOutbox)
        .where(ResultOutbox.id.in_(ids), *guard)
        .values(claim_token=token, claimed_until=now + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    return list(
        session.scalars(
            select(ResultOutbox)
            .where(ResultOutbox.id.in_(ids), ResultOutbox.claim_token == token)
            .order_by(ResultOutbox.next_attempt_at, ResultOutbox.id)
            .execution_options(populate_existing=True)
        ).all()
    )


@dataclass(frozen=True)
class ReportFacts:
    """What a report of one outbox row says: the scan (its file and UIDs), its score for
    the row's model version and the defects it lists, most probable first."""

    scan: Scan
    score: ScanScore
    defects: tuple[str, ...]


def report_facts(session: Session, outbox_id: int) -> ReportFacts | None:
    """The facts of the report of outbox row ``outbox_id``; None when the row or its
    score is gone (the scan was deleted)."""
    row = session.get(ResultOutbox, outbox_id)
    if row is None:
        return None
    found = session.execute(
        select(Scan, ScanScore)
        .join(ScanScore, ScanScore.scan_id == Scan.id)
        .where(Scan.id == row.scan_id, ScanScore.model_version == row.model_version)
    ).first()
    if found is None:
        return None
    defects = session.scalars(
        select(ScanDefect.defect)
        .where(ScanDefect.scan_id == row.scan_id, ScanDefect.model_version == row.model_version)
        .order_by(ScanDefect.rank)
    ).all()
    return ReportFacts(scan=found[0], score=found[1], defects=tuple(defects))


def _finish(session: Session, outbox_id: int, token: str, **values: object) -> bool:
    result = session.execute(
        update(ResultOutbox)
        .where(
            ResultOutbox.id == outbox_id,
            ResultOutbox.claim_token == token,
            ResultOutbox.state == OUTBOX_PENDING,
        )
        .values(
            claim_token=None,
            claimed_until=None,
            attempts=ResultOutbox.attempts + 1,
            **values,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def mark_sent(
    session: Session,
    outbox_id: int,
    token: str,
    *,
    sop_class_uid: str,
    sop_instance_uid: str,
    now: datetime | None = None,
) -> bool:
    """The report was delivered (False: this process no longer holds the row)."""
    return _finish(
        session,
        outbox_id,
        token,
        state=OUTBOX_SENT,
        sent_at=now or utcnow(),
        last_error=None,
        sr_sop_class_uid=sop_class_uid,
        sr_sop_instance_uid=sop_instance_uid,
    )


def mark_retry(
    session: Session, outbox_id: int, token: str, *, error: str, next_attempt_at: datetime
) -> bool:
    """A transient failure (the destination is down or busy): try again at
    ``next_attempt_at``."""
    return _finish(
        session,
        outbox_id,
        token,
        last_error=error[:2000],
        next_attempt_at=next_attempt_at,
    )


def mark_failed(session: Session, outbox_id: int, token: str, *, error: str) -> bool:
    """The report can never be delivered (its file is gone, the destination refuses it)."""
    return _finish(session, outbox_id, token, state=OUTBOX_FAILED, last_error=error[:2000])


@dataclass(frozen=True)
class OutboxSummary:
    """Rows per state (every state, 0 when none), and the oldest ``pending`` row."""

    counts: dict[str, int]
    oldest_pending_id: int | None = None
    oldest_pending_since: datetime | None = None
    last_error: str | None = None


def outbox_summary(session: Session) -> OutboxSummary:
    """The outbox at a glance, for ``usqa status`` and the metrics."""
    counts = dict.fromkeys(OUTBOX_STATES, 0)
    for state, n in session.execute(
        select(ResultOutbox.state, func.count()).group_by(ResultOutbox.state)
    ).all():
        counts[state] = int(n)
    oldest = session.execute(
        select(ResultOutbox.id, ResultOutbox.created_at, ResultOutbox.last_error)
        .where(ResultOutbox.state == OUTBOX_PENDING)
        .order_by(ResultOutbox.created_at, ResultOutbox.id)
        .limit(1)
    ).first()
    if oldest is None:
        return OutboxSummary(counts)
    return OutboxSummary(counts, oldest[0], oldest[1], oldest[2])

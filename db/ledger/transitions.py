"""Every change of a scan's ``status``: the table of allowed moves, and the one guarded
UPDATE, :func:`move`, that makes each of them.

A move names the statuses a row may be in now and the status it goes to. :func:`move`
refuses a move that is not in :data:`MOVES` (a bug in usqa: raised before any SQL), and
changes only the rows that are still in a source status and pass the caller's guards (the
claim token, the attempts or queue time read earlier, no score yet), so two processes that
race for one scan cannot both win. The target status stamps its own columns: ``processing``
its start time, ``queued`` its queue time and no claim, a terminal status its finish time
and no claim. The statuses a row is created with (``queued``, ``skipped`` for a copy,
``failed`` on arrival) are :mod:`db.ledger.received`'s.

Every function takes an open session and never commits.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from db import paths
from db.clock import db_now
from db.ledger.lookups import has_score
from db.ledger.workers import holder_alive
from db.models import FAILED, PROCESSING, QUEUED, SCORED, SKIPPED, STATUSES, Scan, utcnow
from worker.errors import DisallowedMoveError

__all__ = [
    "ALLOWED",
    "MOVES",
    "DisallowedMoveError",
    "Outcome",
    "check_move",
    "claim",
    "finish",
    "give_up",
    "mark_scored",
    "move",
    "release",
    "requeue",
    "rescore_requeue",
    "restore_scored",
]

# (from, to): the function that makes the move, and when
MOVES: Mapping[tuple[str, str], str] = MappingProxyType(
    {
        (QUEUED, PROCESSING): "claim: a worker takes the scan",
        (PROCESSING, PROCESSING): "claim: a retry of the same task, or an abandoned claim",
        (PROCESSING, SCORED): "mark_scored: its score is written (or restore_scored: the "
        "worker's model version already scored it)",
        (PROCESSING, SKIPPED): "finish: a copy, or valid but not to be scored",
        (PROCESSING, FAILED): "finish: the file cannot be scored; give_up: attempts used up",
        (PROCESSING, QUEUED): "release: to be retried; requeue: its worker is gone",
        (QUEUED, QUEUED): "requeue: its message may be lost with the broker",
        (SCORED, QUEUED): "rescore_requeue: to be scored by another model version",
        (SKIPPED, QUEUED): "rescore_requeue: to be scored by another model version",
        (FAILED, QUEUED): "rescore_requeue: to be scored by another model version",
    }
)
# from -> the statuses it may move to
ALLOWED: Mapping[str, frozenset[str]] = MappingProxyType(
    {s: frozenset(to for (src, to) in MOVES if src == s) for s in STATUSES}
)

_CHUNK = 500  # ids per UPDATE


@dataclass(frozen=True)
class Outcome:
    """A terminal outcome for one scan (``skipped`` or ``failed``)."""

    status: str
    reason: str
    duplicate_of: int | None = None


def check_move(sources: Iterable[str], target: str) -> None:
    """Raise DisallowedMoveError unless every ``source -> target`` is in :data:`MOVES`."""
    refused = [s for s in sources if target not in ALLOWED.get(s, ())]
    if refused:
        allowed = ", ".join(f"{a} -> {b}" for a, b in MOVES)
        raise DisallowedMoveError(
            f"scan status move {', '.join(f'{s} -> {target}' for s in refused)} is not "
            f"allowed; the allowed moves are {allowed} (db/ledger/transitions.py MOVES)"
        )


def _stamps(target: str, now: datetime) -> dict[str, Any]:
    """The columns every move to ``target`` sets."""
    if target == PROCESSING:
        return {"started_at": now, "updated_at": now}
    if target == QUEUED:
        return {"claim_token": None, "queued_at": now, "updated_at": now}
    return {"claim_token": None, "finished_at": now, "updated_at": now}


def move(
    session: Session,
    scan_ids: Iterable[int],
    source: str | Collection[str],
    target: str,
    *,
    now: datetime,
    token: str | None = None,
    where: Sequence[ColumnElement[bool]] = (),
    **values: Any,
) -> list[int]:
    """Move the scans ``scan_ids`` that are in ``source`` (one status or several) to
    ``target``, setting ``values`` and the target's stamps: only those still held under
    the claim ``token`` (when given) and passing every ``where`` guard. Returns the ids
    moved, ascending. DisallowedMoveError, before any SQL, for a move outside
    :data:`MOVES`."""
    sources = (source,) if isinstance(source, str) else tuple(source)
    check_move(sources, target)
    guards = [Scan.status == sources[0] if len(sources) == 1 else Scan.status.in_(sources)]
    if token is not None:
        guards.append(Scan.claim_token == token)
    guards.extend(where)
    changes = {**values, **_stamps(target, now), "status": target}
    ids = sorted(set(scan_ids))
    moved: list[int] = []
    for start in range(0, len(ids), _CHUNK):
        result = session.execute(
            update(Scan)
            .where(Scan.id.in_(ids[start : start + _CHUNK]), *guards)
            .values(**changes)
            .returning(Scan.id)
            .execution_options(synchronize_session=False)
        )
        moved.extend(int(i) for i in result.scalars().all())
    return sorted(moved)


def claim(
    session: Session,
    scan_ids: Iterable[int],
    *,
    token: str,
    worker: str,
    stale_before: datetime,
    dead_before: datetime,
    now: datetime | None = None,
) -> list[Scan]:
    """Take the scans that may be processed now and mark them ``processing``.

    A scan is taken when it is ``queued``; or ``processing`` under the same ``token`` (a
    retry of the same task); or ``processing`` but abandoned: started before
    ``stale_before``, or held by a worker whose heartbeat stopped before ``dead_before``.
    Each claim counts one attempt. Returns the claimed rows."""
    ids = sorted(set(scan_ids))
    if not ids:
        return []
    now = now or db_now(session)
    abandoned = or_(
        Scan.claim_token == token,
        Scan.started_at < stale_before,
        ~holder_alive(dead_before),
    )
    move(
        session,
        ids,
        (QUEUED, PROCESSING),
        PROCESSING,
        now=now,
        where=[or_(Scan.status == QUEUED, abandoned)],
        claim_token=token,
        worker=worker,
        attempts=Scan.attempts + 1,
    )
    return list(
        session.scalars(
            select(Scan)
            .where(Scan.id.in_(ids), Scan.status == PROCESSING, Scan.claim_token == token)
            .order_by(Scan.id)
            .execution_options(populate_existing=True)
        ).all()
    )


def mark_scored(
    session: Session,
    scan_ids: Iterable[int],
    token: str,
    *,
    model_version: str,
    now: datetime | None = None,
) -> list[int]:
    """Mark the scans this worker holds ``scored`` by ``model_version`` (their scores are
    :mod:`db.ledger.scores`' part); returns the ids marked."""
    return move(
        session,
        scan_ids,
        PROCESSING,
        SCORED,
        now=now or utcnow(),
        token=token,
        reason=None,
        model_version=model_version,
    )


def restore_scored(
    session: Session, scan_id: int, token: str, model_version: str, now: datetime | None = None
) -> bool:
    """Mark a scan this worker holds ``scored`` again, by ``model_version``, which already
    has a score for it (a re-queued scan picked up by a worker still on that version). No
    score is written. Returns False if the claim was lost."""
    return bool(mark_scored(session, [scan_id], token, model_version=model_version, now=now))


def finish(
    session: Session,
    scan_id: int,
    token: str,
    outcome: Outcome,
    *,
    model_version: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Write a ``skipped``/``failed`` outcome if this worker still holds the scan."""
    assert outcome.status in (SKIPPED, FAILED), outcome
    moved = move(
        session,
        [scan_id],
        PROCESSING,
        outcome.status,
        now=now or utcnow(),
        token=token,
        reason=paths.printable(outcome.reason),
        duplicate_of_id=outcome.duplicate_of,
        model_version=model_version,
    )
    return bool(moved)


def release(
    session: Session, scan_ids: Iterable[int], token: str, reason: str, now: datetime | None = None
) -> list[int]:
    """Put scans this worker holds back to ``queued`` (to be retried); returns their ids."""
    ids = sorted(set(scan_ids))
    if not ids:
        return []
    now = now or db_now(session)
    return move(
        session, ids, PROCESSING, QUEUED, now=now, token=token, reason=paths.printable(reason)
    )


def requeue(session: Session, scans: Sequence[Scan], now: datetime | None = None) -> list[int]:
    """Mark ``scans`` ``queued`` again (only those still in the state they were read in)."""
    now = now or db_now(session)
    done: list[int] = []
    for scan in scans:
        same: list[ColumnElement[bool]] = []
        if scan.status == QUEUED and scan.queued_at is not None:
            same.append(Scan.queued_at == scan.queued_at)
        if scan.status == PROCESSING:
            same += [
                Scan.attempts == scan.attempts,
                Scan.claim_token == scan.claim_token
                if scan.claim_token
                else Scan.claim_token.is_(None),
            ]
        done += move(session, [scan.id], scan.status, QUEUED, now=now, where=same)
    return done


def give_up(session: Session, scan: Scan, reason: str, now: datetime | None = None) -> bool:
    """Fail a stuck scan that has used up its attempts (only if still in that state)."""
    moved = move(
        session,
        [scan.id],
        scan.status,
        FAILED,
        now=now or utcnow(),
        where=[Scan.attempts == scan.attempts],
        reason=paths.printable(reason),
    )
    return bool(moved)


def rescore_requeue(
    session: Session, scans: Sequence[Scan], model_version: str, now: datetime | None = None
) -> list[int]:
    """Put ``scans`` back to ``queued`` for ``model_version``: attempts reset, reason,
    claim and times cleared (the earlier outcome's model version and scores stay). Only
    rows still in the status they were read in and still without a score for that version
    change, so a concurrent rescore or worker cannot queue a scan twice. Returns their ids."""
    now = now or db_now(session)
    by_status: dict[str, list[int]] = {}
    for scan in scans:
        by_status.setdefault(scan.status, []).append(scan.id)
    done: list[int] = []
    for status, ids in by_status.items():
        done += move(
            session,
            ids,
            status,
            QUEUED,
            now=now,
            where=[Scan.duplicate_of_id.is_(None), ~has_score(model_version)],
            attempts=0,
            reason=None,
            started_at=None,
            finished_at=None,
        )
    return sorted(done)

"""Writing scores: a scan's ``scan_scores`` row, its ``scan_defects`` and its
``frame_scores``, together with the move to ``scored`` (made by
:func:`db.ledger.transitions.mark_scored`), one scan at a time or a batch at once.

Defect names are checked against the vocabulary the caller passes (``vocabulary``: the
worker's :data:`model.defects.DEFECTS`) before anything is written. Every function
takes an open session and never commits."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.ledger.lookups import find_scored_duplicate
from db.ledger.transitions import mark_scored
from db.ledger.versions import check_defect_names, check_once
from db.models import PROCESSING, FrameScore, Scan, ScanDefect, ScanScore, utcnow
from worker.errors import ModelError

__all__ = [
    "ScoreEntry",
    "ScoreWrite",
    "insert_frame_scores",
    "try_write_score",
    "try_write_scores",
    "write_score",
    "write_scores",
]


@dataclass(frozen=True)
class ScoreEntry:
    """One scan's score, as :func:`write_scores` takes it (``summary``: a model
    ``ScanScore``)."""

    scan: Scan
    summary: Any
    frame_scores: Sequence[tuple[int, float]]
    decode_ms: float | None = None
    inference_ms: float | None = None


def write_score(
    session: Session,
    scan: Scan,
    token: str,
    *,
    model_version: str,
    aggregate: str,
    summary: Any,
    frame_scores: Sequence[tuple[int, float]],
    decode_ms: float | None = None,
    inference_ms: float | None = None,
    now: datetime | None = None,
    frame_rows: list[dict[str, Any]] | None = None,
    vocabulary: Collection[str] | None = None,
) -> bool:
    """Mark ``scan`` ``scored`` and insert its scan and frame scores, if this worker still
    holds it. ``summary`` is a model ``ScanScore``: its ``defects`` (most probable first)
    become the ``scan_defects`` rows and ``first_defect``, its ``frame_defects`` (aligned
    with the frames sorted by index) the frames' ``first_defect``; a summary without them
    stores NULL and no defect rows. ModelError (before anything is written) for a defect
    name outside ``vocabulary`` (None: not checked), a repeated one, or frame defects that
    do not match the frames. The unique constraints of
    ``scan_scores`` raise IntegrityError if the content or SOP instance already has a score
    for this model version (the caller turns that into a ``skipped`` duplicate).

    With ``frame_rows``, the frame scores are appended there instead of inserted, for one
    :func:`insert_frame_scores` per batch in the same transaction."""
    now = now or utcnow()
    entry = ScoreEntry(scan, summary, frame_scores, decode_ms, inference_ms)
    # built first: they refuse bad defects before anything is written
    rows = _frame_rows(entry, model_version, vocabulary)
    defects = _defect_rows(entry, model_version, vocabulary)
    if not mark_scored(session, [scan.id], token, model_version=model_version, now=now):
        return False
    session.add(ScanScore(**_score_values(entry, model_version, aggregate, now)))
    session.flush()
    _insert_defects(session, defects)
    if frame_rows is None:
        insert_frame_scores(session, rows)
    else:
        frame_rows.extend(rows)
    return True


def write_scores(
    session: Session,
    token: str,
    entries: Sequence[ScoreEntry],
    model_version: str,
    aggregate: str,
    now: datetime | None = None,
    vocabulary: Collection[str] | None = None,
) -> bool:
    """:func:`write_score` for many scans in a few statements: only when this worker still
    holds every one of them (else nothing is written and False is returned, so the caller
    can go scan by scan). Raises IntegrityError like :func:`write_score`, and ModelError
    like it before any statement; run it in a savepoint."""
    if not entries:
        return True
    now = now or utcnow()
    # built first: they refuse bad defects before anything is written
    frames = [row for e in entries for row in _frame_rows(e, model_version, vocabulary)]
    defects = [row for e in entries for row in _defect_rows(e, model_version, vocabulary)]
    ids = [e.scan.id for e in entries]
    held = session.scalars(
        select(Scan.id)
        .where(Scan.id.in_(ids), Scan.status == PROCESSING, Scan.claim_token == token)
        .with_for_update()
    ).all()
    if len(held) != len(set(ids)):
        return False
    mark_scored(session, ids, token, model_version=model_version, now=now)  # held: all move
    session.execute(
        insert(ScanScore).execution_options(render_nulls=True),
        [_score_values(e, model_version, aggregate, now) for e in entries],
    )
    _insert_defects(session, defects)
    insert_frame_scores(session, frames)
    return True


@dataclass(frozen=True)
class ScoreWrite:
    """What :func:`try_write_score` did: ``written`` (the scan is ``scored`` now), or
    nothing, because the worker lost its claim or because ``duplicate`` (another scan and
    ``content`` or ``SOP instance``) was scored by this model version meanwhile."""

    written: bool
    duplicate: tuple[Scan, str] | None = None


def try_write_scores(
    session: Session,
    token: str,
    entries: Sequence[ScoreEntry],
    model_version: str,
    aggregate: str,
    now: datetime | None = None,
    vocabulary: Collection[str] | None = None,
) -> bool:
    """:func:`write_scores` in a savepoint: False, with nothing written, when a claim was
    lost or a content or SOP instance already has a score from ``model_version`` (then
    write them one by one with :func:`try_write_score`)."""
    try:
        with session.begin_nested():
            return write_scores(session, token, entries, model_version, aggregate, now, vocabulary)
    except IntegrityError:  # a duplicate was scored meanwhile
        return False


def try_write_score(
    session: Session,
    entry: ScoreEntry,
    token: str,
    *,
    model_version: str,
    aggregate: str,
    frame_rows: list[dict[str, Any]] | None = None,
    now: datetime | None = None,
    vocabulary: Collection[str] | None = None,
) -> ScoreWrite:
    """:func:`write_score` in a savepoint; when its content or SOP instance was scored by
    ``model_version`` meanwhile (by another worker), nothing is written and that scan is
    returned as the ``duplicate`` (IntegrityError again if no such scan is found)."""
    scan = entry.scan
    try:
        with session.begin_nested():
            written = write_score(
                session,
                scan,
                token,
                model_version=model_version,
                aggregate=aggregate,
                summary=entry.summary,
                frame_scores=entry.frame_scores,
                decode_ms=entry.decode_ms,
                inference_ms=entry.inference_ms,
                now=now,
                frame_rows=frame_rows,
                vocabulary=vocabulary,
            )
    except IntegrityError:
        hit = find_scored_duplicate(
            session,
            model_version=model_version,
            sha256=scan.sha256,
            sop_instance_uid=scan.sop_instance_uid,
            exclude_scan_id=scan.id,
        )
        if hit is None:
            raise
        return ScoreWrite(False, hit)
    return ScoreWrite(written)


def insert_frame_scores(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert frame score rows (``scan_id``, ``model_version``, ``frame_index``,
    ``score``, ``first_defect``) in one executemany statement (``render_nulls``: rows
    with and without a defect stay in one batch)."""
    if rows:
        session.execute(insert(FrameScore).execution_options(render_nulls=True), list(rows))


def _score_values(
    entry: ScoreEntry, model_version: str, aggregate: str, now: datetime
) -> dict[str, Any]:
    """The ``scan_scores`` row of one scan."""
    scan, summary = entry.scan, entry.summary
    defects = _defects(entry)
    return {
        "scan_id": scan.id,
        "model_version": model_version,
        "sha256": scan.sha256,
        "sop_instance_uid": scan.sop_instance_uid,
        "score": float(summary.score),
        "mean_score": float(summary.mean),
        "min_score": float(summary.min),
        "p10_score": float(summary.p10),
        "grade": str(summary.grade),
        "first_defect": str(defects[0].name) if defects else None,
        "frames_scored": int(summary.frames_scored),
        "aggregate": aggregate,
        "scored_at": now,
        "decode_ms": entry.decode_ms,
        "inference_ms": entry.inference_ms,
    }


def _defects(entry: ScoreEntry) -> Sequence[Any]:
    """The summary's listed defects (``DefectCall``s, most probable first; none when the
    summary has no ``defects``)."""
    return tuple(getattr(entry.summary, "defects", None) or ())


def _defect_rows(
    entry: ScoreEntry, model_version: str, vocabulary: Collection[str] | None
) -> list[dict[str, Any]]:
    """The ``scan_defects`` rows of one scan, ranked from 1; ModelError for an unknown or
    repeated name."""
    calls = _defects(entry)
    names = [str(c.name) for c in calls]
    where = f"scan {entry.scan.id} ({entry.scan.path})"
    check_defect_names(names, where, vocabulary)
    check_once(names, where)
    return [
        {
            "scan_id": entry.scan.id,
            "model_version": model_version,
            "defect": name,
            "rank": rank,
            "probability": float(call.probability),
            "frame_share": float(call.frames),
        }
        for rank, (name, call) in enumerate(zip(names, calls, strict=True), start=1)
    ]


def _frame_defects(entry: ScoreEntry, vocabulary: Collection[str] | None) -> Sequence[str | None]:
    """Per frame (sorted by index), its first defect; all None when the summary has none.
    ModelError when the list does not match the frames or names an unknown defect."""
    found = tuple(getattr(entry.summary, "frame_defects", None) or ())
    if not found:
        return [None] * len(entry.frame_scores)
    if len(found) != len(entry.frame_scores):
        raise ModelError(
            f"scan {entry.scan.id} ({entry.scan.path}): {len(found)} frame defects for "
            f"{len(entry.frame_scores)} frame scores; expected one per scored frame, in "
            "frame order (the model package is inconsistent)"
        )
    check_defect_names(found, f"scan {entry.scan.id} ({entry.scan.path}) frames", vocabulary)
    return found


def _frame_rows(
    entry: ScoreEntry, model_version: str, vocabulary: Collection[str] | None
) -> list[dict[str, Any]]:
    """The ``frame_scores`` rows of one scan, by frame index."""
    frames = sorted(entry.frame_scores)
    return [
        {
            "scan_id": entry.scan.id,
            "model_version": model_version,
            "frame_index": i,
            "score": float(v),
            "first_defect": defect,
        }
        for (i, v), defect in zip(frames, _frame_defects(entry, vocabulary), strict=True)
    ]


def _insert_defects(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``scan_defects`` rows in one executemany statement."""
    if rows:
        session.execute(insert(ScanDefect), list(rows))

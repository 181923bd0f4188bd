"""Ledger operations: record a received file, claim scans for scoring, write outcomes,
find stuck scans and duplicates, heartbeats.

Every function takes an open session and never commits (the caller's
:func:`~db.session.session_scope` does). Writes that finish a scan are guarded by the
claim token, so a worker that lost its claim (it was presumed dead and the scan handed to
another) cannot write a second outcome.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db import paths
from db.clock import db_now
from db.models import (
    FAILED,
    PROCESSING,
    QUEUED,
    SCORED,
    SKIPPED,
    TERMINAL,
    FrameScore,
    ModelVersion,
    Scan,
    ScanDefect,
    ScanScore,
    WorkerProcess,
    utcnow,
)
from model.defects import DEFECTS
from worker.errors import ModelError

__all__ = [
    "METADATA_COLUMNS",
    "Outcome",
    "Received",
    "ReceivedFile",
    "ScoreEntry",
    "age_cutoff",
    "check_defect_names",
    "claim",
    "db_now",
    "ensure_model_version",
    "file_identity",
    "find_original",
    "find_originals",
    "find_scored_duplicate",
    "finish",
    "give_up",
    "heartbeat",
    "insert_frame_scores",
    "known_files",
    "mark_disposed",
    "metadata_columns",
    "paths_text",
    "pending_disposal",
    "queued_ids",
    "record_failed_many",
    "record_received",
    "record_received_many",
    "release",
    "requeue",
    "stuck_scans",
    "update_columns",
    "write_score",
    "write_scores",
]

# dicom_io metadata keys stored as columns of ``scans`` (same names).
METADATA_COLUMNS = (
    "sop_instance_uid",
    "study_instance_uid",
    "series_instance_uid",
    "sop_class_uid",
    "modality",
    "manufacturer",
    "model_name",
    "station_name",
    "device_serial_number",
    "software_versions",
    "transducer",
    "institution",
    "operator",
    "body_part",
    "study_datetime",
    "acquisition_datetime",
    "patient_id_hash",
    "frame_time_ms",
    "photometric",
    "transfer_syntax",
    "burned_in_annotation",
)
_DATETIMES = {"study_datetime", "acquisition_datetime"}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """A terminal outcome for one scan (``skipped`` or ``failed``)."""

    status: str
    reason: str
    duplicate_of: int | None = None


def _text(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        value = "\\".join(str(v) for v in value)
    text = str(value).strip()
    return text[:limit] if text else None


def _datetime(value: Any) -> datetime | None:
    """Scanner-local wall-clock time (an offset, if given, is dropped, not applied)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    try:
        return datetime.fromisoformat(str(value)).replace(tzinfo=None)
    except ValueError:
        return None


def metadata_columns(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The ``scans`` column values for a dicom_io ``Scan.metadata`` dict (unknown keys are
    ignored; values are trimmed to the column sizes; unparsable dates become None)."""
    out: dict[str, Any] = {}
    for key in METADATA_COLUMNS:
        value = metadata.get(key)
        if key in _DATETIMES:
            out[key] = _datetime(value)
        elif key == "frame_time_ms":
            try:
                number = float(value) if value is not None else None
            except (TypeError, ValueError):
                number = None
            out[key] = number if number is not None and math.isfinite(number) else None
        elif key == "burned_in_annotation":
            if isinstance(value, bool):
                out[key] = "YES" if value else "NO"
            else:
                out[key] = _text(value, 8)
        else:
            column = Scan.__table__.c[key]
            out[key] = _text(value, getattr(column.type, "length", None) or 255)
    return out


# --- ingest -----------------------------------------------------------------------------


def _signed64(value: int | None) -> int | None:
    """A device or inode number (unsigned 64-bit) as the signed value a BIGINT holds."""
    if value is None:
        return None
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def file_identity(device: int, inode: int) -> tuple[int | None, int | None]:
    """``(file_device, file_inode)`` column values for an ``os.stat_result``'s numbers."""
    return _signed64(device), _signed64(inode)


def known_files(session: Session, paths: Sequence[str]) -> dict[str, list[Scan]]:
    """The ledger rows for each of ``paths`` (as ``os`` functions give them; names that are
    not plain text are looked up by their escaped form), most recent first."""
    found: dict[str, list[Scan]] = {}
    by_text: dict[str, str] = {paths_text(p): p for p in paths}
    texts = list(by_text)
    for start in range(0, len(texts), 500):
        chunk = texts[start : start + 500]
        rows = session.scalars(
            select(Scan).where(Scan.path.in_(chunk)).order_by(Scan.id.desc())
        ).all()
        for row in rows:
            found.setdefault(by_text.get(row.path, row.path), []).append(row)
    return found


def paths_text(path: str) -> str:
    """The ``scans.path`` value of a path (db/paths.py: escaped unless plain)."""
    return paths.ledger_path(path)[0]


def find_original(session: Session, sha256: str) -> Scan | None:
    """The first scan with this content that did not fail (the one a copy duplicates)."""
    return session.scalars(
        select(Scan)
        .where(Scan.sha256 == sha256, Scan.status != FAILED, Scan.duplicate_of_id.is_(None))
        .order_by(Scan.id)
        .limit(1)
    ).first()


def find_originals(session: Session, digests: Iterable[str]) -> dict[str, Scan]:
    """:func:`find_original` for many contents at once (sha256 -> first scan)."""
    wanted = sorted(set(digests))
    found: dict[str, Scan] = {}
    for start in range(0, len(wanted), 500):
        rows = session.scalars(
            select(Scan)
            .where(
                Scan.sha256.in_(wanted[start : start + 500]),
                Scan.status != FAILED,
                Scan.duplicate_of_id.is_(None),
            )
            .order_by(Scan.id)
        ).all()
        for row in rows:
            found.setdefault(row.sha256, row)
    return found


def record_received(
    session: Session,
    *,
    path: str,
    size_bytes: int,
    mtime_ns: int,
    sha256: str,
    now: datetime | None = None,
    duplicate_of: Scan | None = None,
) -> Scan:
    """Insert the ledger row of a received file: ``queued``, or ``skipped`` when it is a
    copy of ``duplicate_of``. Flushes, so the row has its id. ``path`` as ``os`` functions
    give it (stored escaped when it is not plain text, db/paths.py)."""
    now = now or db_now(session)
    text, raw = paths.ledger_path(path)
    scan = Scan(
        path=text,
        path_bytes=raw,
        size_bytes=size_bytes,
        mtime_ns=mtime_ns,
        sha256=sha256,
        received_at=now,
        updated_at=now,
        attempts=0,
    )
    if duplicate_of is None:
        scan.status = QUEUED
        scan.queued_at = now
    else:
        scan.status = SKIPPED
        scan.finished_at = now
        scan.duplicate_of_id = duplicate_of.id
        scan.reason = _duplicate_reason(duplicate_of.id, duplicate_of.path, sha256)
    session.add(scan)
    session.flush()
    return scan


@dataclass(frozen=True)
class ReceivedFile:
    """A file to record: its path as ``os`` functions give it, size, mtime, content hash
    (``""`` when it was not hashed) and, when known, its device and inode numbers."""

    path: str
    size_bytes: int
    mtime_ns: int
    sha256: str
    device: int | None = None
    inode: int | None = None


_FileLike = ReceivedFile | tuple[str, int, int, str]


def _as_file(file: _FileLike) -> ReceivedFile:
    return file if isinstance(file, ReceivedFile) else ReceivedFile(*file)


@dataclass(frozen=True)
class Received:
    """A file as the ingester recorded it: the id of its new row, and, for a copy of
    content already in the ledger (or earlier in the same batch), that scan's id and the
    ``skipped`` reason."""

    id: int
    path: str
    sha256: str
    duplicate_of: int | None = None
    reason: str | None = None


def record_received_many(
    session: Session,
    files: Sequence[_FileLike],
    *,
    originals: Mapping[str, Scan],
    now: datetime | None = None,
) -> list[Received]:
    """:func:`record_received` for a batch of :class:`ReceivedFile` (or ``(path,
    size_bytes, mtime_ns, sha256)`` tuples), in two multi-row INSERTs (the new contents,
    then the copies) instead of one per file. ``originals``: the first scan of each content
    already in the ledger (:func:`find_originals`). An empty file has no identity: it is
    never a copy. Returns one :class:`Received` per file, in order (``path``: the ledger
    text)."""
    now = now or db_now(session)
    given = [_as_file(f) for f in files]
    known = {sha: (scan.id, scan.path) for sha, scan in originals.items()}
    new: list[int] = []
    first_here: dict[str, int] = {}  # content -> its first new file in this batch
    for i, f in enumerate(given):
        if f.size_bytes == 0 or (f.sha256 not in known and f.sha256 not in first_here):
            new.append(i)
            if f.size_bytes:
                first_here[f.sha256] = i
    rows = [_scan_row(given[i], now, status=QUEUED, queued_at=now) for i in new]
    ids = dict(zip(new, _insert_scans(session, rows), strict=True))
    texts = {i: str(row["path"]) for i, row in zip(new, rows, strict=True)}
    known.update((sha, (ids[i], texts[i])) for sha, i in first_here.items())
    out = {i: Received(ids[i], texts[i], given[i].sha256) for i in new}
    copies = [i for i in range(len(given)) if i not in ids]
    rows = []
    for i in copies:
        original_id, original_path = known[given[i].sha256]
        reason = _duplicate_reason(original_id, original_path, given[i].sha256)
        rows.append(
            _scan_row(
                given[i],
                now,
                status=SKIPPED,
                finished_at=now,
                duplicate_of_id=original_id,
                reason=reason,
            )
        )
    for i, scan_id, row in zip(copies, _insert_scans(session, rows), rows, strict=True):
        out[i] = Received(
            scan_id, str(row["path"]), given[i].sha256, row["duplicate_of_id"], row["reason"]
        )
    return [out[i] for i in range(len(given))]


def record_failed_many(
    session: Session,
    files: Sequence[ReceivedFile],
    reasons: Sequence[str],
    *,
    now: datetime | None = None,
) -> list[Received]:
    """Record files that fail on arrival (over USQA_MAX_FILE_BYTES: never hashed, so
    ``sha256`` may be ``""``) as ``failed`` with their reason, in one INSERT."""
    now = now or utcnow()
    rows = [
        _scan_row(f, now, status=FAILED, finished_at=now, reason=paths.printable(reason))
        for f, reason in zip(files, reasons, strict=True)
    ]
    ids = _insert_scans(session, rows)
    return [
        Received(scan_id, str(row["path"]), f.sha256, None, row["reason"])
        for scan_id, row, f in zip(ids, rows, files, strict=True)
    ]


def _scan_row(file: ReceivedFile, now: datetime, **more: Any) -> dict[str, Any]:
    text, raw = paths.ledger_path(file.path)
    device, inode = (
        file_identity(file.device, file.inode)
        if file.device is not None and file.inode is not None
        else (None, None)
    )
    return {
        "path": text,
        "path_bytes": raw,
        "size_bytes": file.size_bytes,
        "mtime_ns": file.mtime_ns,
        "file_device": device,
        "file_inode": inode,
        "sha256": file.sha256,
        "received_at": now,
        "updated_at": now,
        "attempts": 0,
        **more,
    }


def _insert_scans(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` into ``scans`` in one statement; their ids, in order."""
    if not rows:
        return []
    statement = insert(Scan).returning(Scan.id, sort_by_parameter_order=True)
    return list(session.scalars(statement, rows).all())


def _duplicate_reason(original_id: int, original_path: str, sha256: str) -> str:
    return f"duplicate of scan {original_id} ({original_path}): same content (sha256 {sha256[:12]})"


def queued_ids(session: Session, limit: int | None = None) -> list[int]:
    """Ids of every ``queued`` scan, oldest first."""
    query = select(Scan.id).where(Scan.status == QUEUED).order_by(Scan.id)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query).all())


# --- scoring ----------------------------------------------------------------------------


def _holder_alive(dead_before: datetime) -> Any:
    return exists().where(
        WorkerProcess.name == Scan.worker,
        WorkerProcess.last_seen_at >= dead_before,
        WorkerProcess.stopped_at.is_(None),
    )


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
        ~_holder_alive(dead_before),
    )
    session.execute(
        update(Scan)
        .where(
            Scan.id.in_(ids),
            or_(Scan.status == QUEUED, and_(Scan.status == PROCESSING, abandoned)),
        )
        .values(
            status=PROCESSING,
            claim_token=token,
            worker=worker,
            started_at=now,
            attempts=Scan.attempts + 1,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return list(
        session.scalars(
            select(Scan)
            .where(Scan.id.in_(ids), Scan.status == PROCESSING, Scan.claim_token == token)
            .order_by(Scan.id)
            .execution_options(populate_existing=True)
        ).all()
    )


def check_defect_names(names: Iterable[str | None], where: str) -> None:
    """Raise ModelError unless every name (None aside) is in :data:`model.defects.DEFECTS`."""
    unknown = sorted({n for n in names if n is not None and n not in DEFECTS})
    if unknown:
        raise ModelError(
            f"{where}: unknown defect name(s) {', '.join(map(repr, unknown))}; expected "
            f"names from model.defects.DEFECTS ({', '.join(DEFECTS)}); the model and this "
            "usqa disagree on the vocabulary: use weights trained for this usqa version"
        )


def _check_once(names: Sequence[str], where: str) -> None:
    """Raise ModelError if a defect name repeats."""
    if len(set(names)) != len(names):
        raise ModelError(
            f"{where}: defect names {list(names)} name a defect twice; expected each once "
            "(the model package is inconsistent)"
        )


def _defect_names_json(version: str, names: Sequence[str] | None) -> str | None:
    """The ``model_versions.defect_names`` value: a JSON list, or None (no defect head)."""
    if not names:
        return None
    where = f"model version {version}"
    check_defect_names(names, where)
    _check_once(names, where)
    return json.dumps(list(names))


def ensure_model_version(
    session: Session,
    version: str,
    *,
    weights_sha256: str | None = None,
    architecture: str | None = None,
    weights_name: str | None = None,
    defect_names: Sequence[str] | None = None,
) -> None:
    """Make sure ``model_versions`` has a row for ``version`` (safe under races).

    ``defect_names``: the defects the model judges, in its output order (None or empty: it
    has no defect head). Stored on a new row, or on an existing row that has none yet; a
    row that already names other defects keeps them (a warning is logged). ModelError for a
    name outside :data:`model.defects.DEFECTS` or a repeated one."""
    names = _defect_names_json(version, defect_names)
    now = utcnow()
    row = session.get(ModelVersion, version)
    if row is not None:
        row.last_used_at = now
        _fill_defect_names(row, names)
        return
    try:
        with session.begin_nested():
            session.add(
                ModelVersion(
                    version=version,
                    weights_sha256=weights_sha256,
                    architecture=architecture,
                    weights_name=weights_name,
                    defect_names=names,
                    first_used_at=now,
                    last_used_at=now,
                )
            )
    except IntegrityError:  # another worker registered it first
        row = session.get(ModelVersion, version, populate_existing=True)
        if row is not None:
            _fill_defect_names(row, names)


def _fill_defect_names(row: ModelVersion, names: str | None) -> None:
    if names is None or row.defect_names == names:
        return
    if row.defect_names is None:
        row.defect_names = names
        return
    log.warning(
        "model version %s: the ledger lists its defects as %s, this process as %s; keeping "
        "the ledger's",
        row.version,
        row.defect_names,
        names,
    )


def find_scored_duplicate(
    session: Session,
    *,
    model_version: str,
    sha256: str,
    sop_instance_uid: str | None,
    exclude_scan_id: int,
) -> tuple[Scan, str] | None:
    """Another scan already scored by ``model_version`` with the same content or SOP
    instance, and which of the two matched (``content`` or ``SOP instance``)."""
    match = ScanScore.sha256 == sha256
    if sop_instance_uid:
        match = or_(match, ScanScore.sop_instance_uid == sop_instance_uid)
    hit = session.execute(
        select(Scan, ScanScore.sha256)
        .join(ScanScore, ScanScore.scan_id == Scan.id)
        .where(ScanScore.model_version == model_version, match, Scan.id != exclude_scan_id)
        .order_by(Scan.id)
        .limit(1)
    ).first()
    if hit is None:
        return None
    scan, hit_sha = hit
    return scan, "content" if hit_sha == sha256 else "SOP instance"


def _finish_values(now: datetime) -> dict[str, Any]:
    return {"finished_at": now, "updated_at": now, "claim_token": None}


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
    now = now or utcnow()
    result = session.execute(
        update(Scan)
        .where(Scan.id == scan_id, Scan.status == PROCESSING, Scan.claim_token == token)
        .values(
            status=outcome.status,
            reason=paths.printable(outcome.reason),
            duplicate_of_id=outcome.duplicate_of,
            model_version=model_version,
            **_finish_values(now),
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


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
) -> bool:
    """Mark ``scan`` ``scored`` and insert its scan and frame scores, if this worker still
    holds it. ``summary`` is a model ``ScanScore``: its ``defects`` (most probable first)
    become the ``scan_defects`` rows and ``first_defect``, its ``frame_defects`` (aligned
    with the frames sorted by index) the frames' ``first_defect``; a summary without them
    stores NULL and no defect rows. ModelError (before anything is written) for a defect
    name outside :data:`model.defects.DEFECTS`, a repeated one, or frame defects that do
    not match the frames. The unique constraints of
    ``scan_scores`` raise IntegrityError if the content or SOP instance already has a score
    for this model version (the caller turns that into a ``skipped`` duplicate).

    With ``frame_rows``, the frame scores are appended there instead of inserted, for one
    :func:`insert_frame_scores` per batch in the same transaction."""
    now = now or utcnow()
    entry = ScoreEntry(scan, summary, frame_scores, decode_ms, inference_ms)
    # built first: they refuse bad defects before anything is written
    rows = _frame_rows(entry, model_version)
    defects = _defect_rows(entry, model_version)
    result = session.execute(
        update(Scan)
        .where(Scan.id == scan.id, Scan.status == PROCESSING, Scan.claim_token == token)
        .values(status=SCORED, reason=None, model_version=model_version, **_finish_values(now))
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    session.add(ScanScore(**_score_values(entry, model_version, aggregate, now)))
    session.flush()
    _insert_defects(session, defects)
    if frame_rows is None:
        insert_frame_scores(session, rows)
    else:
        frame_rows.extend(rows)
    return True


_SCANS = cast(Table, Scan.__table__)  # Core statements: executemany without ORM overhead


@dataclass(frozen=True)
class ScoreEntry:
    """One scan's score, as :func:`write_scores` takes it (``summary``: a model
    ``ScanScore``)."""

    scan: Scan
    summary: Any
    frame_scores: Sequence[tuple[int, float]]
    decode_ms: float | None = None
    inference_ms: float | None = None


def write_scores(
    session: Session,
    token: str,
    entries: Sequence[ScoreEntry],
    model_version: str,
    aggregate: str,
    now: datetime | None = None,
) -> bool:
    """:func:`write_score` for many scans in a few statements: only when this worker still
    holds every one of them (else nothing is written and False is returned, so the caller
    can go scan by scan). Raises IntegrityError like :func:`write_score`, and ModelError
    like it before any statement; run it in a savepoint."""
    if not entries:
        return True
    now = now or utcnow()
    # built first: they refuse bad defects before anything is written
    frames = [row for e in entries for row in _frame_rows(e, model_version)]
    defects = [row for e in entries for row in _defect_rows(e, model_version)]
    ids = [e.scan.id for e in entries]
    held = session.scalars(
        select(Scan.id)
        .where(Scan.id.in_(ids), Scan.status == PROCESSING, Scan.claim_token == token)
        .with_for_update()
    ).all()
    if len(held) != len(set(ids)):
        return False
    table = _SCANS
    session.execute(
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(status=SCORED, reason=None, model_version=model_version, **_finish_values(now)),
        [{"b_id": scan_id} for scan_id in ids],
    )
    session.execute(
        insert(ScanScore).execution_options(render_nulls=True),
        [_score_values(e, model_version, aggregate, now) for e in entries],
    )
    _insert_defects(session, defects)
    insert_frame_scores(session, frames)
    return True


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


def _defect_rows(entry: ScoreEntry, model_version: str) -> list[dict[str, Any]]:
    """The ``scan_defects`` rows of one scan, ranked from 1; ModelError for an unknown or
    repeated name."""
    calls = _defects(entry)
    names = [str(c.name) for c in calls]
    where = f"scan {entry.scan.id} ({entry.scan.path})"
    check_defect_names(names, where)
    _check_once(names, where)
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


def _frame_defects(entry: ScoreEntry) -> Sequence[str | None]:
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
    check_defect_names(found, f"scan {entry.scan.id} ({entry.scan.path}) frames")
    return found


def _frame_rows(entry: ScoreEntry, model_version: str) -> list[dict[str, Any]]:
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
        for (i, v), defect in zip(frames, _frame_defects(entry), strict=True)
    ]


def _insert_defects(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``scan_defects`` rows in one executemany statement."""
    if rows:
        session.execute(insert(ScanDefect), list(rows))


def update_columns(
    session: Session, token: str, changes: Sequence[tuple[int, Mapping[str, Any]]]
) -> None:
    """Set header columns (``{column: value}`` per scan id) on the scans this worker holds,
    one executemany statement per set of column names."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for scan_id, columns in changes:
        if columns:
            names = tuple(sorted(columns))
            groups.setdefault(names, []).append(
                {"b_id": scan_id, "b_token": token, **{f"v_{k}": columns[k] for k in names}}
            )
    table = _SCANS
    for names, rows in groups.items():
        session.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"), table.c.claim_token == bindparam("b_token"))
            .values({name: bindparam(f"v_{name}") for name in names}),
            rows,
        )


def insert_frame_scores(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert frame score rows (``scan_id``, ``model_version``, ``frame_index``,
    ``score``, ``first_defect``) in one executemany statement (``render_nulls``: rows
    with and without a defect stay in one batch)."""
    if rows:
        session.execute(insert(FrameScore).execution_options(render_nulls=True), list(rows))


def release(
    session: Session, scan_ids: Iterable[int], token: str, reason: str, now: datetime | None = None
) -> list[int]:
    """Put scans this worker holds back to ``queued`` (to be retried); returns their ids."""
    ids = sorted(set(scan_ids))
    if not ids:
        return []
    now = now or db_now(session)
    held = list(
        session.scalars(
            select(Scan.id).where(
                Scan.id.in_(ids), Scan.status == PROCESSING, Scan.claim_token == token
            )
        ).all()
    )
    if held:
        session.execute(
            update(Scan)
            .where(Scan.id.in_(held))
            .values(
                status=QUEUED,
                claim_token=None,
                reason=paths.printable(reason),
                queued_at=now,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
    return held


# --- reconciling ------------------------------------------------------------------------


def stuck_scans(
    session: Session,
    *,
    queued_before: datetime,
    stale_before: datetime,
    dead_before: datetime,
    limit: int = 1000,
) -> list[Scan]:
    """Scans that look lost: ``queued`` since before ``queued_before`` (the message may be
    gone with the broker), or ``processing`` and abandoned (see :func:`claim`)."""
    abandoned = and_(
        Scan.status == PROCESSING,
        or_(Scan.started_at < stale_before, ~_holder_alive(dead_before)),
    )
    lost = and_(Scan.status == QUEUED, Scan.queued_at < queued_before)
    return list(
        session.scalars(
            select(Scan).where(or_(lost, abandoned)).order_by(Scan.id).limit(limit)
        ).all()
    )


def requeue(session: Session, scans: Sequence[Scan], now: datetime | None = None) -> list[int]:
    """Mark ``scans`` ``queued`` again (only those still in the state they were read in)."""
    now = now or db_now(session)
    done: list[int] = []
    for scan in scans:
        same = [Scan.id == scan.id, Scan.status == scan.status]
        if scan.status == QUEUED and scan.queued_at is not None:
            same.append(Scan.queued_at == scan.queued_at)
        if scan.status == PROCESSING:
            same += [
                Scan.attempts == scan.attempts,
                Scan.claim_token == scan.claim_token
                if scan.claim_token
                else Scan.claim_token.is_(None),
            ]
        result = session.execute(
            update(Scan)
            .where(*same)
            .values(status=QUEUED, claim_token=None, queued_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            done.append(scan.id)
    return done


def give_up(session: Session, scan: Scan, reason: str, now: datetime | None = None) -> bool:
    """Fail a stuck scan that has used up its attempts (only if still in that state)."""
    now = now or utcnow()
    result = session.execute(
        update(Scan)
        .where(Scan.id == scan.id, Scan.status == scan.status, Scan.attempts == scan.attempts)
        .values(status=FAILED, reason=paths.printable(reason), **_finish_values(now))
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


# --- after scoring ----------------------------------------------------------------------


def pending_disposal(session: Session, under: str, limit: int = 200) -> list[Scan]:
    """Terminal scans below the folder ``under`` (as ``os`` functions give it) whose file
    has not been dealt with yet."""
    prefix = paths_text(under.rstrip("/") + "/")
    return list(
        session.scalars(
            select(Scan)
            .where(
                Scan.status.in_(TERMINAL),
                Scan.disposed_at.is_(None),
                func.substr(Scan.path, 1, len(prefix)) == prefix,
            )
            .order_by(Scan.id)
            .limit(limit)
        ).all()
    )


def mark_disposed(session: Session, scan_id: int, disposition: str, new_path: str | None) -> None:
    """Record what was done with the file (kept, moved, deleted, missing, replaced,
    refused); ``new_path`` as ``os`` functions give it (stored as db/paths.py says)."""
    text, raw = paths.ledger_path(new_path) if new_path is not None else (None, None)
    session.execute(
        update(Scan)
        .where(Scan.id == scan_id)
        .values(
            disposition=disposition,
            disposed_path=text,
            disposed_path_bytes=raw,
            disposed_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )


# --- workers ----------------------------------------------------------------------------


def heartbeat(
    session: Session,
    *,
    name: str,
    hostname: str,
    pid: int,
    mode: str,
    model_version: str | None = None,
    scans_done: int | None = None,
    stopped: bool = False,
) -> None:
    """Create or refresh a worker's row, stamped with the database's clock."""
    now = db_now(session)
    row = session.get(WorkerProcess, name)
    if row is None:
        row = WorkerProcess(
            name=name, hostname=hostname, pid=pid, mode=mode, started_at=now, scans_done=0
        )
        session.add(row)
    row.last_seen_at = now
    row.stopped_at = now if stopped else None
    if model_version is not None:
        row.model_version = model_version
    if scans_done is not None:
        row.scans_done = scans_done
    session.flush()


def age_cutoff(seconds: float, now: datetime | None = None) -> datetime:
    """``now`` (the database's clock: :func:`db_now`) minus ``seconds``, aware UTC."""
    return (now or datetime.now(UTC)) - timedelta(seconds=seconds)

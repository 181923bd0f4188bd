"""Recording received files: the row each file gets on arrival, before anything is queued:
``queued``; ``skipped`` when it is a copy of content already in the ledger (or earlier in
the same batch); ``failed`` when it is refused on arrival. Later status changes are
:mod:`db.ledger.transitions`'.

Every function takes an open session and never commits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from db import paths
from db.clock import db_now
from db.models import FAILED, QUEUED, SKIPPED, Scan, utcnow

__all__ = [
    "Received",
    "ReceivedFile",
    "file_identity",
    "record_failed_many",
    "record_received",
    "record_received_many",
]


def _signed64(value: int | None) -> int | None:
    """A device or inode number (unsigned 64-bit) as the signed value a BIGINT holds."""
    if value is None:
        return None
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def file_identity(device: int, inode: int) -> tuple[int | None, int | None]:
    """``(file_device, file_inode)`` column values for an ``os.stat_result``'s numbers."""
    return _signed64(device), _signed64(inode)


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
    already in the ledger (:func:`db.ledger.lookups.find_originals`). An empty file has no
    identity: it is never a copy. Returns one :class:`Received` per file, in order
    (``path``: the ledger text)."""
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

"""Questions asked of ``scans`` on the way in and while scoring: which rows a path or a
content already has, what was already scored by a model version, what waits, what looks
lost, and where a scan's file is now (and whether it is still the file received).

Read-only: every function takes an open session (or a row) and writes nothing."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import Exists

from db import paths
from db.ledger.workers import holder_alive
from db.models import ACTIVE, FAILED, PROCESSING, QUEUED, Scan, ScanScore

__all__ = [
    "active_under",
    "failed_under",
    "file_location",
    "file_problem",
    "find_original",
    "find_originals",
    "find_scored_duplicate",
    "has_score",
    "known_files",
    "known_scores",
    "path_under",
    "paths_text",
    "queued_count",
    "queued_ids",
    "stuck_scans",
]

_CHUNK = 500  # ids or values per IN list


def paths_text(path: str) -> str:
    """The ``scans.path`` value of a path (db/paths.py: escaped unless plain)."""
    return paths.ledger_path(path)[0]


def path_under(root: str) -> ColumnElement[bool]:
    """SQL condition: the scan was received below the folder ``root`` (as ``os`` functions
    give it)."""
    prefix = paths_text(root.rstrip("/") + "/")  # as scans.path holds it
    return func.substr(Scan.path, 1, len(prefix)) == prefix


def known_files(session: Session, paths: Sequence[str]) -> dict[str, list[Scan]]:
    """The ledger rows for each of ``paths`` (as ``os`` functions give them; names that are
    not plain text are looked up by their escaped form), most recent first."""
    found: dict[str, list[Scan]] = {}
    by_text: dict[str, str] = {paths_text(p): p for p in paths}
    texts = list(by_text)
    for start in range(0, len(texts), _CHUNK):
        chunk = texts[start : start + _CHUNK]
        rows = session.scalars(
            select(Scan).where(Scan.path.in_(chunk)).order_by(Scan.id.desc())
        ).all()
        for row in rows:
            found.setdefault(by_text.get(row.path, row.path), []).append(row)
    return found


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
    for start in range(0, len(wanted), _CHUNK):
        rows = session.scalars(
            select(Scan)
            .where(
                Scan.sha256.in_(wanted[start : start + _CHUNK]),
                Scan.status != FAILED,
                Scan.duplicate_of_id.is_(None),
            )
            .order_by(Scan.id)
        ).all()
        for row in rows:
            found.setdefault(row.sha256, row)
    return found


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


def known_scores(
    session: Session, version: str, shas: Iterable[str], uids: Iterable[str | None] = ()
) -> tuple[dict[str, Scan], dict[str, Scan]]:
    """The scans already scored by ``version`` with one of the contents ``shas`` or one of
    the SOP instances ``uids`` (None entries are ignored): ``(by_sha, by_uid)``, each
    mapping a content or SOP instance to its first scan (lowest id). One query, for
    :func:`find_scored_duplicate` over a whole batch."""
    wanted_uids = {u for u in uids if u is not None}
    match: ColumnElement[bool] = ScanScore.sha256.in_(set(shas))
    if wanted_uids:
        match = or_(match, ScanScore.sop_instance_uid.in_(wanted_uids))
    by_sha: dict[str, Scan] = {}
    by_uid: dict[str, Scan] = {}
    rows = session.execute(
        select(Scan, ScanScore.sha256, ScanScore.sop_instance_uid)
        .join(ScanScore, ScanScore.scan_id == Scan.id)
        .where(ScanScore.model_version == version, match)
        .order_by(Scan.id)
    ).all()
    for scan, sha, uid in rows:
        by_sha.setdefault(sha, scan)
        if uid:
            by_uid.setdefault(uid, scan)
    return by_sha, by_uid


def has_score(model_version: str) -> Exists:
    """SQL condition: the scan has a score for ``model_version``."""
    return exists().where(ScanScore.scan_id == Scan.id, ScanScore.model_version == model_version)


def queued_ids(session: Session, limit: int | None = None) -> list[int]:
    """Ids of every ``queued`` scan, oldest first."""
    query = select(Scan.id).where(Scan.status == QUEUED).order_by(Scan.id)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query).all())


def queued_count(session: Session) -> int:
    """How many scans are ``queued`` (the ``usqa_queue_depth`` metric)."""
    count = session.scalar(select(func.count()).select_from(Scan).where(Scan.status == QUEUED))
    return int(count or 0)


def active_under(session: Session, root: str) -> int:
    """How many scans received below the folder ``root`` still wait for an outcome
    (``queued`` or ``processing``)."""
    count = session.scalar(
        select(func.count()).select_from(Scan).where(Scan.status.in_(ACTIVE), path_under(root))
    )
    return int(count or 0)


def failed_under(session: Session, root: str, since: datetime) -> int:
    """How many scans received below the folder ``root`` ended ``failed`` since ``since``."""
    count = session.scalar(
        select(func.count())
        .select_from(Scan)
        .where(Scan.status == FAILED, Scan.finished_at >= since, path_under(root))
    )
    return int(count or 0)


def stuck_scans(
    session: Session,
    *,
    queued_before: datetime,
    stale_before: datetime,
    dead_before: datetime,
    limit: int = 1000,
) -> list[Scan]:
    """Scans that look lost: ``queued`` since before ``queued_before`` (the message may be
    gone with the broker), or ``processing`` and abandoned (see
    :func:`db.ledger.transitions.claim`)."""
    abandoned = and_(
        Scan.status == PROCESSING,
        or_(Scan.started_at < stale_before, ~holder_alive(dead_before)),
    )
    lost = and_(Scan.status == QUEUED, Scan.queued_at < queued_before)
    return list(
        session.scalars(
            select(Scan).where(or_(lost, abandoned)).order_by(Scan.id).limit(limit)
        ).all()
    )


def file_location(scan: Scan) -> str | None:
    """Where the scan's file is now: its moved place in ``done/``/``failed/`` when the
    after-scoring policy moved it, None when the policy deleted it or found it missing,
    else the path it was received at. The path to open, as ``os`` functions take it: from
    the original bytes of a name stored escaped (db/paths.py)."""
    if scan.disposition == "moved" and scan.disposed_path:
        return paths.fs_path(scan.disposed_path, scan.disposed_path_bytes)
    if scan.disposition in ("deleted", "missing"):
        return None
    return paths.fs_path(scan.path, scan.path_bytes)


def file_problem(scan: Scan) -> str | None:
    """Why the scan's file cannot be read again as the file that was received (None: it
    can): the after-scoring policy deleted it or found it missing, it is gone or
    unreadable now, or its size or modification time differs from the recorded ones."""
    location = file_location(scan)
    if location is None:
        return f"the file was {scan.disposition} after scoring"
    try:
        st = Path(location).stat()
    except OSError as exc:
        return f"{paths.printable(location)}: the file is gone or unreadable ({exc.strerror})"
    if st.st_size != scan.size_bytes or st.st_mtime_ns != scan.mtime_ns:
        return f"{paths.printable(location)}: the file changed after it was received"
    return None

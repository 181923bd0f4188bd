"""The ``workers`` table: heartbeats, and who counts as alive (judged by the database's
clock, :func:`db.clock.db_now`, so machines whose clocks disagree still agree)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from db.clock import db_now
from db.models import Scan, WorkerProcess

__all__ = ["age_cutoff", "heartbeat", "holder_alive", "live_model_versions"]


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


def holder_alive(dead_before: datetime) -> Any:
    """SQL condition: the worker holding the scan has beaten since ``dead_before`` and has
    not stopped."""
    return exists().where(
        WorkerProcess.name == Scan.worker,
        WorkerProcess.last_seen_at >= dead_before,
        WorkerProcess.stopped_at.is_(None),
    )


def live_model_versions(session: Session, *, alive_since: datetime) -> list[str | None]:
    """The model version of each worker that has beaten since ``alive_since`` and has not
    stopped (None for one that has not loaded a model yet), one entry per worker."""
    rows = session.execute(
        select(WorkerProcess.model_version).where(
            WorkerProcess.last_seen_at >= alive_since, WorkerProcess.stopped_at.is_(None)
        )
    ).all()
    return [version for (version,) in rows]

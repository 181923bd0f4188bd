"""The one clock that liveness and staleness are judged by: the database server's."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import utcnow

__all__ = ["db_now"]


def db_now(session: Session) -> datetime:
    """The database server's current time, aware UTC. Every time stamp that liveness or
    staleness is judged by (heartbeats, claims, queued_at) is written with this clock and
    compared with it, so machines whose clocks disagree still agree on who is alive. SQLite
    lives on one machine: there it is this process's clock (at microsecond resolution)."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return utcnow()
    clock = func.statement_timestamp() if dialect == "postgresql" else func.current_timestamp()
    value = session.scalar(select(clock))
    if not isinstance(value, datetime):
        raise TypeError(f"the database returned {value!r} for its clock")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

"""Schema migrations (Alembic, shipped inside the package): upgrade, and check the
database is at the version this code expects."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import Connection

from db.session import get_engine, is_unavailable, shown_url
from dicom_io.messages import first_line
from worker.errors import ConfigError, DatabaseUnavailableError

__all__ = [
    "DASHBOARD_ROLE",
    "MIGRATIONS",
    "current_revision",
    "head_revision",
    "include_object",
    "require_current",
    "upgrade",
]

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The PostgreSQL group role of dashboards (deploy/postgres/roles.sql): SELECT on the qa_*
# views only, re-granted by every `usqa db upgrade` so that new or rebuilt views keep it.
DASHBOARD_ROLE = "usqa_dashboard"


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """For schema comparisons: leave out indexes that exist only in the database because a
    migration wrote them by hand (on expressions, per dialect); the models cannot say them."""
    return not (type_ == "index" and reflected and compare_to is None)


@contextmanager
def _quiet_alembic() -> Iterator[None]:
    """Alembic logs each connection at INFO; keep that for DEBUG runs only."""
    logger = logging.getLogger("alembic.runtime.migration")
    before = logger.level
    if not log.isEnabledFor(logging.DEBUG):
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(before)


def _config(url: str) -> Config:
    cfg = Config(str(MIGRATIONS / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _unavailable(url: str, exc: BaseException) -> DatabaseUnavailableError:
    first = first_line(getattr(exc, "orig", None) or exc, limit=500, kind=False)
    return DatabaseUnavailableError(
        f"{shown_url(url)}: cannot reach the database ({first}); check that the server is "
        "running and USQA_DATABASE_URL is right"
    )


def head_revision() -> str:
    """The newest schema revision this code ships."""
    head = ScriptDirectory.from_config(_config("sqlite://")).get_current_head()
    assert head is not None, "no migrations shipped"
    return head


def current_revision(url: str) -> str | None:
    """The schema revision of the database (None: no usqa tables yet)."""
    try:
        with _quiet_alembic(), get_engine(url).connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except sa_exc.SQLAlchemyError as exc:
        if is_unavailable(exc):
            raise _unavailable(url, exc) from exc
        raise


def grant_dashboard_views(conn: Connection) -> list[str]:
    """PostgreSQL: let :data:`DASHBOARD_ROLE`, when it exists, SELECT every ``qa_*`` view of
    the current schema that this role owns and it cannot read yet (nothing else: no table).
    Returns the views granted. A no-op on SQLite or without the role."""
    if conn.dialect.name != "postgresql":
        return []
    if (
        conn.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": DASHBOARD_ROLE})
        is None
    ):
        return []
    views = conn.scalars(
        text(
            "SELECT viewname FROM pg_views WHERE schemaname = current_schema() "
            "AND viewname LIKE 'qa\\_%' AND pg_has_role(current_user, viewowner, 'USAGE') "
            "AND NOT has_table_privilege(:r, format('%I.%I', schemaname, viewname), 'SELECT')"
        ),
        {"r": DASHBOARD_ROLE},
    ).all()
    for view in views:
        conn.execute(text(f'GRANT SELECT ON "{view}" TO {DASHBOARD_ROLE}'))
    if views:
        log.info("granted %s SELECT on %s", DASHBOARD_ROLE, ", ".join(views))
    return list(views)


def upgrade(url: str, revision: str = "head") -> tuple[str | None, str]:
    """Bring the schema to ``revision``; returns (before, after)."""
    before = current_revision(url)
    cfg = _config(url)
    try:
        with _quiet_alembic(), get_engine(url).begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            grant_dashboard_views(conn)
    except sa_exc.SQLAlchemyError as exc:
        if is_unavailable(exc):
            raise _unavailable(url, exc) from exc
        raise
    after = current_revision(url)
    assert after is not None
    if before != after:
        log.info("database %s upgraded from %s to %s", shown_url(url), before or "empty", after)
    return before, after


def require_current(url: str) -> None:
    """Raise ConfigError unless the database schema is at the head revision."""
    current, head = current_revision(url), head_revision()
    if current == head:
        return
    if current is None:
        raise ConfigError(
            f"{shown_url(url)} has no usqa tables yet; run `usqa db upgrade` once with the "
            "same USQA_DATABASE_URL"
        )
    raise ConfigError(
        f"{shown_url(url)} is at schema revision {current}, this usqa needs {head}; run "
        "`usqa db upgrade` (back up the database first)"
    )

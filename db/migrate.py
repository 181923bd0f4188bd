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

from db.session import get_engine, is_unavailable, shown_url
from worker.errors import ConfigError, DatabaseUnavailableError

__all__ = [
    "MIGRATIONS",
    "current_revision",
    "head_revision",
    "include_object",
    "require_current",
    "upgrade",
]

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


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
    first = str(getattr(exc, "orig", None) or exc).splitlines()[0]
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


def upgrade(url: str, revision: str = "head") -> tuple[str | None, str]:
    """Bring the schema to ``revision``; returns (before, after)."""
    before = current_revision(url)
    cfg = _config(url)
    try:
        with _quiet_alembic(), get_engine(url).begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
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

"""Engines and sessions: one engine per database URL per process, built on first use.

:func:`session_scope` commits on success and rolls back on error; query helpers take the
session and never commit. Database errors that mean "the server is not there right now"
become :class:`~worker.errors.DatabaseUnavailableError` (retried by the caller); a missing
or old schema becomes :class:`~worker.errors.ConfigError` (run ``usqa db upgrade``).

SQLite runs in WAL mode with a busy timeout, and write transactions start with ``BEGIN
IMMEDIATE`` so that two writers queue on the lock instead of failing half-way.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import Session

from dicom_io.messages import first_line, shown_url
from worker.errors import ConfigError, DatabaseUnavailableError

__all__ = ["dispose_engines", "get_engine", "is_unavailable", "session_scope", "shown_url"]

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_S = 30.0
READONLY = "usqa_readonly"

_engines: dict[tuple[str, int, float | None], Engine] = {}
_lock = threading.Lock()


def _sqlite_pragmas(
    dbapi_connection: Any, _record: Any, wait: float = SQLITE_BUSY_TIMEOUT_S
) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_begin)
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    readonly = conn.get_execution_options().get(READONLY, False)
    conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def _build_engine(url: str, wait: float | None = None) -> Engine:
    """The engine for ``url``; ``wait``: the longest wait for a lock, a pooled connection
    or a connection to the server (seconds; default 30 s, 10 s to connect)."""
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError as exc:
        raise ConfigError(
            f"USQA_DATABASE_URL={url!r} is not a database URL; expected e.g. "
            "sqlite:///usqa.db or postgresql+psycopg://user@host/dbname"
        ) from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
            raise ConfigError(
                f"USQA_DATABASE_URL={url!r}: an in-memory SQLite database would lose the "
                "ledger; give a file, e.g. sqlite:///usqa.db"
            )
        busy = SQLITE_BUSY_TIMEOUT_S if wait is None else wait
        engine = create_engine(
            parsed,
            connect_args={"timeout": busy, "check_same_thread": False},
        )
        event.listen(engine, "connect", lambda c, r: _sqlite_pragmas(c, r, busy))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        connect_args: dict[str, Any] = {}
        if parsed.get_driver_name() in ("psycopg", "psycopg2"):
            connect_args["connect_timeout"] = 10 if wait is None else max(1, math.ceil(wait))
            if wait is not None:  # a lock held elsewhere (a migration, a vacuum) waits no longer
                given = parsed.query.get("options", "")  # the URL's own (search_path...) kept
                given = " ".join(given) if isinstance(given, tuple) else given
                timeout = f"-c lock_timeout={max(1, int(wait * 1000))}"
                connect_args["options"] = f"{given} {timeout}".strip()
        return create_engine(
            parsed,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=5,
            pool_timeout=30 if wait is None else wait,
            connect_args=connect_args,
        )
    try:
        return create_engine(parsed, pool_pre_ping=True)
    except (sa_exc.NoSuchModuleError, ImportError) as exc:
        raise ConfigError(
            f"USQA_DATABASE_URL={shown_url(url)}: no driver for {backend!r} is installed; "
            "use sqlite:/// or postgresql+psycopg://"
        ) from exc


def _resolved(url: str) -> str:
    """``url`` with a relative SQLite file made absolute against the current directory, so
    that ``sqlite:///usqa.db`` always means the file where the process is working now."""
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError:
        return url  # _build_engine explains the problem
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return url
    if database.startswith("file:") or Path(database).is_absolute():
        return url
    absolute = str(Path(database).absolute())
    return parsed.set(database=absolute).render_as_string(hide_password=False)


def get_engine(url: str, wait: float | None = None) -> Engine:
    """The engine for ``url`` in this process (a forked child builds its own); ``wait``:
    a separate engine whose lock, pool and connect waits are at most this (seconds), for
    callers that must answer quickly (the DICOM listener)."""
    url = _resolved(url)
    key = (url, os.getpid(), wait)
    engine = _engines.get(key)
    if engine is not None:
        return engine
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            for old_key, old in list(_engines.items()):
                if old_key[1] != os.getpid():  # inherited over fork: never touch its sockets
                    old.dispose(close=False)
                    del _engines[old_key]
            engine = _build_engine(url, wait)
            _engines[key] = engine
    return engine


def dispose_engines() -> None:
    """Close every pooled connection of this process (at shutdown, or after a fork)."""
    with _lock:
        for (_, pid, _wait), engine in list(_engines.items()):
            engine.dispose(close=pid == os.getpid())
        _engines.clear()


# PostgreSQL error classes that psycopg raises as OperationalError although the server is
# fine and the statement itself is at fault: 54, program limit exceeded (a value too large
# to index, too many columns). Retrying them would retry for ever.
_STATEMENT_AT_FAULT = ("54",)


def is_unavailable(exc: BaseException) -> bool:
    """Whether a database error means "the server is not available right now"."""
    if isinstance(exc, DatabaseUnavailableError):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sa_exc.InterfaceError | sa_exc.DisconnectionError | sa_exc.TimeoutError):
        return True
    if isinstance(exc, sa_exc.OperationalError):
        code = getattr(exc.orig, "sqlstate", None)
        if isinstance(code, str) and code.startswith(_STATEMENT_AT_FAULT):
            return False
        text = str(exc.orig).lower() if exc.orig is not None else str(exc).lower()
        return not ("no such table" in text or "no such column" in text)
    return False


def _translate(exc: BaseException, url: str) -> BaseException | None:
    """The usqa error to raise instead of ``exc``, or None to let it through."""
    text = first_line(getattr(exc, "orig", None) or exc, limit=500, kind=False)
    if isinstance(exc, sa_exc.OperationalError | sa_exc.ProgrammingError) and (
        "no such table" in text or ("does not exist" in text and "relation" in text)
    ):
        return ConfigError(
            f"{shown_url(url)}: the usqa tables are missing or out of date ({text}); "
            "run `usqa db upgrade` with the same USQA_DATABASE_URL"
        )
    if is_unavailable(exc):
        if isinstance(exc, DatabaseUnavailableError):
            return None
        return DatabaseUnavailableError(
            f"{shown_url(url)}: the database is not available ({text}); "
            "usqa retries; check that the database server is running and reachable"
        )
    return None


@contextmanager
def session_scope(
    url: str, *, readonly: bool = False, wait: float | None = None
) -> Iterator[Session]:
    """A session in one transaction: committed if the block succeeds, rolled back if not.

    ``readonly`` lets SQLite readers run beside a writer (no write lock is taken); ``wait``
    bounds the waits for a lock or a connection (:func:`get_engine`)."""
    engine = get_engine(url, wait)
    bind = engine.execution_options(**{READONLY: True}) if readonly else engine
    session = Session(bind=bind, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException as exc:
        try:
            session.rollback()
        except sa_exc.SQLAlchemyError:
            log.debug("rollback failed after %r", exc)
        replacement = _translate(exc, url) if isinstance(exc, sa_exc.SQLAlchemyError) else None
        if replacement is not None:
            raise replacement from exc
        raise
    finally:
        try:
            session.close()
        except sa_exc.SQLAlchemyError:
            log.debug("closing a session failed", exc_info=True)

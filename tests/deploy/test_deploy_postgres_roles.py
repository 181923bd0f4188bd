"""deploy/postgres: the init script and roles.sql, run for real against the test PostgreSQL
server on a database of their own. usqa_owner migrates, usqa_app reads and writes rows but
cannot change the schema, usqa_dashboard (and its login usqa_reader) reads the qa_* views
and nothing else, none of them is a superuser, and running the script again changes
nothing."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

import db
from db import ledger
from db.migrate import DASHBOARD_ROLE
from db.site import check_salt
from tests.deploy.deploy_files import DEPLOY

pytestmark = pytest.mark.integration

INIT = DEPLOY / "postgres" / "10-usqa-roles.sh"
ROLES_SQL = DEPLOY / "postgres" / "roles.sql"
ROLES = ("usqa_reader", "usqa_dashboard", "usqa_app", "usqa_owner")


@dataclass(frozen=True)
class Site:
    database: str
    env: dict[str, str]

    def url(self, role: str) -> str:
        return (
            make_url(self.env["ADMIN_URL"])
            .set(username=role, password=f"pw-{role}", database=self.database)
            .render_as_string(hide_password=False)
        )


def _init(site: Site) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(INIT)], env=site.env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def site(postgres_url: str) -> Iterator[Site]:
    """A fresh database on the test server, initialised by the init script as the
    postgres image would (POSTGRES_USER / POSTGRES_DB, the script in initdb.d)."""
    if shutil.which("psql") is None:
        pytest.fail("psql is not installed: apt-get install -y postgresql-client")
    url = make_url(postgres_url).set(query={})
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"usqa_roles_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    env = {
        **os.environ,
        "PGHOST": url.host or "127.0.0.1",
        "PGPORT": str(url.port or 5432),
        "POSTGRES_USER": url.username or "postgres",
        "POSTGRES_DB": name,
        "ROLES_SQL": str(ROLES_SQL),
        "POSTGRES_OWNER_PASSWORD": "pw-usqa_owner",
        "POSTGRES_APP_PASSWORD": "pw-usqa_app",
        "POSTGRES_READER_PASSWORD": "pw-usqa_reader",
        "ADMIN_URL": url.render_as_string(hide_password=False),
    }
    try:
        yield Site(name, env)
    finally:
        db.dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            for role in ROLES:  # roles are server-wide: leave the test server as it was
                with contextlib.suppress(ProgrammingError):  # still used elsewhere
                    conn.execute(text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()


def _denied(url: str, sql: str) -> None:
    engine = db.get_engine(url)
    with (
        pytest.raises(ProgrammingError, match=r"permission denied|must be owner"),
        engine.begin() as conn,
    ):
        conn.execute(text(sql))


def test_least_privilege_roles(site: Site) -> None:
    first = _init(site)
    assert first.returncode == 0, first.stderr
    again = _init(site)  # idempotent: a second run fails on nothing
    assert again.returncode == 0, again.stderr

    owner, app, reader = site.url("usqa_owner"), site.url("usqa_app"), site.url("usqa_reader")
    db.upgrade(owner)  # the migration job, as usqa_owner; grants the new qa_* views
    db.require_current(app)
    db.upgrade(app)  # `usqa run` on PostgreSQL upgrades at start: at head, a no-op for it

    with db.get_engine(owner).connect() as conn:
        supers = conn.execute(
            text("SELECT rolname FROM pg_roles WHERE rolname LIKE 'usqa\\_%' AND rolsuper")
        ).all()
        assert supers == []
        tables = set(
            conn.scalars(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
        )
        owners = set(
            conn.scalars(
                text("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
            )
        )
        views = set(conn.scalars(text("SELECT viewname FROM pg_views WHERE schemaname = 'public'")))
    assert {"scans", "scan_scores", "site_settings", "alembic_version"} <= tables
    assert owners == {"usqa_owner"}
    assert "qa_daily_summary" in views

    # usqa_app: rows yes, schema no
    with db.session_scope(app) as s:
        scan = ledger.record_received(
            s, path="/data/dropbox/a.dcm", size_bytes=10, mtime_ns=1, sha256="0" * 64
        )
        assert check_salt(s, "a-long-enough-salt-value", process="test:1").outcome == "recorded"
    with db.get_engine(app).begin() as conn:
        conn.execute(text("UPDATE scans SET reason = 'checked' WHERE id = :i"), {"i": scan.id})
        assert conn.scalar(text("SELECT count(*) FROM qa_scan_outcomes")) == 1
    for sql in (
        "CREATE TABLE intruder (x int)",
        "DROP TABLE scans",
        "ALTER TABLE scans ADD COLUMN x int",
        "DROP VIEW qa_daily_summary",
        "TRUNCATE scans",
    ):
        _denied(app, sql)

    # usqa_reader (via usqa_dashboard): the qa_* views, nothing else
    with db.get_engine(reader).connect() as conn:
        for view in sorted(v for v in views if v.startswith("qa_")):
            conn.execute(text(f"SELECT * FROM {view} LIMIT 1")).all()
    for sql in (
        "SELECT * FROM scans",
        "SELECT * FROM site_settings",
        "SELECT * FROM alembic_version",
        "DELETE FROM qa_scan_outcomes",
        "CREATE TABLE intruder (x int)",
    ):
        _denied(reader, sql)
    with db.get_engine(owner).connect() as conn:
        tables_read = conn.scalars(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND has_table_privilege(:r, format('%I.%I', schemaname, tablename), 'SELECT')"
            ),
            {"r": DASHBOARD_ROLE},
        ).all()
    assert tables_read == []


def test_the_init_script_says_what_is_missing(site: Site) -> None:
    env = {**site.env, "POSTGRES_APP_PASSWORD": ""}
    done = subprocess.run(
        ["sh", str(INIT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert "POSTGRES_APP_PASSWORD is not set" in done.stderr and "usqa.env" in done.stderr

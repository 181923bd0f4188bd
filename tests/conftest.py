"""Shared fixtures, the one home of the database ones (URLs of fresh ledgers on SQLite and
PostgreSQL, the once-per-session schema templates) and of the services' URLs. Real services,
never mocks: a service that is not reachable fails the test (CI sets
USQA_TEST_REQUIRE_SERVICES=1 and starts them in .ci/run)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.weights import head_checkpoint, random_checkpoint

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BUSI = SHARED / "datasets" / "busi"


@pytest.fixture(scope="session")
def busi_dir() -> Path:
    """The BUSI copy beside the checkout (tests and training only; never the product)."""
    if not (BUSI / "splits.csv").is_file():
        pytest.fail(f"BUSI data not found at {BUSI}: CI runs with ../shared beside the clone")
    return BUSI


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return os.environ.get(
        "USQA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ.get("USQA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


class PostgresSchemas:
    """Namespaces on the PostgreSQL test server, one per call: a new schema, made the
    connection's search_path through the URL, so every table, view and alembic_version of a
    test lives apart. :meth:`empty` gives a schema without tables; :meth:`migrated` one at the
    current head, cloned from a template schema that is upgraded once per session (a dump
    of it, replayed under the new name: the same tables, indexes, views and grants as an
    Alembic upgrade, in a fraction of its time). All are dropped at the end of the session."""

    def __init__(self, postgres_url: str) -> None:
        from sqlalchemy import create_engine

        self.url = postgres_url
        self.admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        self.made: list[str] = []
        self.template: tuple[str, str | None] | None = None  # (name, its dump or None)

    def _url_of(self, name: str) -> str:
        from sqlalchemy.engine import make_url

        url = make_url(self.url).update_query_dict({"options": f"-csearch_path={name}"})
        return url.render_as_string(hide_password=False)

    def _new_name(self) -> str:
        import uuid

        name = f"usqa_test_{uuid.uuid4().hex[:12]}"
        self.made.append(name)
        return name

    def empty(self) -> str:
        from sqlalchemy import text

        name = self._new_name()
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
        return self._url_of(name)

    def migrated(self) -> str:
        import db

        if self.template is None:
            url = self.empty()
            db.upgrade(url)
            db.get_engine(url).dispose()
            self.template = (self.made[-1], self._dump(self.made[-1]))
        name, dump = self.template
        if dump is None:  # no pg_dump for this server: a real upgrade each time
            url = self.empty()
            db.upgrade(url)
            return url
        clone = self._new_name()
        with self.admin.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            raw.execute(dump.replace(name, clone))
        return self._url_of(clone)

    def _dump(self, name: str) -> str | None:
        """The schema ``name`` as SQL (data included: alembic_version), without psql's
        meta-commands, ending with a RESET of the settings the dump makes."""
        import subprocess

        from sqlalchemy.engine import make_url

        libpq = make_url(self.url).set(drivername="postgresql")
        try:
            done = subprocess.run(
                ["pg_dump", "--schema", name, "--no-owner", "--inserts",
                 "--dbname", libpq.render_as_string(hide_password=False)],
                capture_output=True, text=True, check=True, timeout=120,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return None
        lines = [line for line in done.stdout.splitlines() if not line.startswith("\\")]
        return "\n".join([*lines, "RESET ALL;"])

    def close(self) -> None:
        from sqlalchemy import text

        from db.session import dispose_engines

        dispose_engines()
        with self.admin.connect() as conn:
            for name in self.made:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        self.admin.dispose()


@pytest.fixture(scope="session")
def postgres_schemas(postgres_url: str) -> Iterator[PostgresSchemas]:
    schemas = PostgresSchemas(postgres_url)
    yield schemas
    schemas.close()


@pytest.fixture(scope="session")
def postgres_database(postgres_schemas: PostgresSchemas) -> Callable[[], str]:
    """A factory of fresh, empty PostgreSQL namespaces (no tables: for tests of the
    migrations and of ``usqa db upgrade``); their SQLAlchemy URLs, usable by subprocesses."""
    return postgres_schemas.empty


@pytest.fixture(scope="session")
def postgres_ledger(postgres_schemas: PostgresSchemas) -> Callable[[], str]:
    """A factory of fresh PostgreSQL ledgers at the current schema (cloned from a template
    upgraded once); their SQLAlchemy URLs, usable by subprocesses."""
    return postgres_schemas.migrated


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite ledger upgraded to head once per session, for :func:`sqlite_url` to copy."""
    import db

    path = tmp_path_factory.mktemp("template") / "usqa.db"
    url = f"sqlite:///{path}"
    db.upgrade(url)
    db.get_engine(url).dispose()  # the last connection checkpoints the WAL into the file
    assert not path.with_name(f"{path.name}-wal").exists(), "the template's WAL is not merged"
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """A fresh SQLite ledger at the current schema, ``tmp_path/usqa.db`` (a copy of the
    session's template: the same file an upgrade makes)."""
    path = tmp_path / "usqa.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request: pytest.FixtureRequest) -> str:
    """A fresh ledger at the current schema, on SQLite, then on PostgreSQL."""
    if request.param == "sqlite":
        url: str = request.getfixturevalue("sqlite_url")
        return url
    make: Callable[[], str] = request.getfixturevalue("postgres_ledger")
    return make()


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh ledger brought to the current schema by a real Alembic upgrade, on SQLite,
    then on PostgreSQL: for the tests of the migrations themselves."""
    import db

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'usqa.db'}"
    else:
        make: Callable[[], str] = request.getfixturevalue("postgres_database")
        url = make()
    db.upgrade(url)
    return url


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A usqa checkpoint with random (seeded) weights, for pipeline tests that do not care
    about score values."""
    return random_checkpoint(tmp_path_factory.mktemp("weights") / "random.pt", seed=0)


@pytest.fixture(scope="session")
def shadowing_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every frame scores 60 and shows shadowing (p 0.95) and blur (p 0.73)."""
    path = tmp_path_factory.mktemp("weights") / "shadowing.pt"
    return head_checkpoint(path, {"shadowing": 3.0, "blur": 1.0})


@pytest.fixture(scope="session")
def not_ultrasound_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every frame is judged not ultrasound (p 0.98)."""
    return head_checkpoint(tmp_path_factory.mktemp("weights") / "gate.pt", gate=4.0)

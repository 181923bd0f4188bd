"""Fixtures of the review page's tests: a seeded site (tests/web/site.py) on SQLite (and on
PostgreSQL through ``any_site``), its Flask app and test client, and, for the browser tests,
the same site served by a real waitress server on a free port (``served_site``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.web.site import PASSWORDS, Site, build_site, serving, settings_for
from worker.web import create_app
from worker.web.passwords import hash_password


@pytest.fixture(scope="session")
def password_hashes() -> dict[str, str]:
    """One argon2id hash per test account, made once per session (each costs ~0.1 s)."""
    return {name: hash_password(password) for name, password in PASSWORDS.items()}


@pytest.fixture
def site(sqlite_url: str, tmp_path: Path, password_hashes: dict[str, str]) -> Site:
    """The seeded site on a fresh SQLite ledger."""
    return build_site(sqlite_url, tmp_path, password_hashes)


@pytest.fixture
def any_site(any_url: str, tmp_path: Path, password_hashes: dict[str, str]) -> Site:
    """The seeded site on SQLite, then on PostgreSQL."""
    return build_site(any_url, tmp_path, password_hashes)


@pytest.fixture
def app(site: Site) -> Flask:
    return create_app(settings_for(site.url))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@dataclass(frozen=True)
class ServedSite:
    """The seeded site behind a real server: ``base_url`` (``http://127.0.0.1:PORT``)."""

    base_url: str
    site: Site


@pytest.fixture
def served_site(site: Site) -> Iterator[ServedSite]:
    """The seeded SQLite site served by waitress in a thread (plain-http cookies), for
    browser tests: sign in with any account of tests/web/site.py PASSWORDS."""
    with serving(create_app(settings_for(site.url))) as base_url:
        yield ServedSite(base_url, site)

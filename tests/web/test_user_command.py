"""``usqa user``: accounts made, listed (never a hash), given a new password or role,
disabled and enabled, each change audited; a new password or a disabled account ends the
account's sign-ins; the password rule; and a web sign-in with an account made here."""

from __future__ import annotations

import getpass
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import select

import db
from db import reviews
from db.models import AuditEntry, User, WebSession
from tests.web.site import settings_for, sign_in
from worker.cli import main
from worker.web import create_app
from worker.web.passwords import MIN_LENGTH

PASSWORD = "correct horse battery"


def usqa(url: str, *args: str, stdin: str = "") -> int:
    """``usqa user ARGS`` with ``stdin`` as standard input (put back afterwards)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stdin", io.StringIO(stdin))
        return main(["user", *args, "--database-url", url])


def account(url: str, name: str) -> User:
    with db.session_scope(url, readonly=True) as session:
        found = reviews.find_user(session, name)
    assert found is not None
    return found


def trail(url: str) -> list[tuple[str, str | None, str | None]]:
    with db.session_scope(url, readonly=True) as session:
        rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        return [(e.action, e.user_name, e.detail) for e in rows]


def sessions(url: str) -> int:
    with db.session_scope(url, readonly=True) as session:
        return len(session.scalars(select(WebSession)).all())


def test_add_list_passwd_role_disable_enable(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = sqlite_url
    monkeypatch.setattr(getpass, "getuser", lambda: "itadmin")
    assert usqa(url, "add", "Dr Lee", "--role", "reviewer", "--password-stdin",
                stdin=PASSWORD + "\n") == 0  # fmt: skip
    assert "Account Dr Lee added: reviewer, password." in capsys.readouterr().out
    stored = account(url, "Dr Lee").password_hash or ""
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert usqa(url, "add", "sso-user", "--role", "viewer", "--no-password") == 0
    assert account(url, "sso-user").password_hash is None

    capsys.readouterr()
    assert usqa(url, "list") == 0
    out = capsys.readouterr().out
    assert "Dr Lee" in out and "reviewer" in out and "sso-user" in out
    assert "$argon2" not in out and "no (single sign-on only)" in out
    assert usqa(url, "list", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["role"], r["disabled"]) for r in rows] == [
        ("Dr Lee", "reviewer", ""), ("sso-user", "viewer", ""),
    ]  # fmt: skip

    client = create_app(settings_for(url)).test_client()  # the account signs in on the page
    assert sign_in(client, "Dr Lee", PASSWORD).status_code == 303
    assert sessions(url) == 1
    assert usqa(url, "passwd", "Dr Lee", "--password-stdin", stdin="another good password\n") == 0
    assert "(1 sign-in ended)" in capsys.readouterr().out
    assert sessions(url) == 0 and client.get("/scans").status_code == 303
    assert sign_in(client, "Dr Lee", PASSWORD).status_code == 200  # the old one is refused
    assert sign_in(client, "Dr Lee", "another good password").status_code == 303

    assert usqa(url, "role", "Dr Lee", "admin") == 0
    assert account(url, "Dr Lee").role == "admin" and client.get("/audit").status_code == 200
    assert usqa(url, "disable", "Dr Lee") == 0
    assert account(url, "Dr Lee").disabled_at is not None and sessions(url) == 0
    assert client.get("/scans").status_code == 303
    assert usqa(url, "enable", "Dr Lee") == 0
    assert account(url, "Dr Lee").disabled_at is None

    changes = [t for t in trail(url) if t[0] in ("user_added", "user_changed")]
    assert changes == [
        ("user_added", "Dr Lee", "role reviewer, password; by itadmin (usqa user add)"),
        ("user_added", "sso-user", "role viewer, single sign-on only; by itadmin (usqa user add)"),
        ("user_changed", "Dr Lee", "password changed; by itadmin (usqa user passwd)"),
        ("user_changed", "Dr Lee", "role reviewer -> admin; by itadmin (usqa user role)"),
        ("user_changed", "Dr Lee", "disabled; by itadmin (usqa user disable)"),
        ("user_changed", "Dr Lee", "enabled; by itadmin (usqa user enable)"),
    ]


def test_the_password_rule_and_other_refusals(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = sqlite_url
    short = "x" * (MIN_LENGTH - 1)
    assert usqa(url, "add", "lee", "--role", "viewer", "--password-stdin", stdin=short) == 2
    assert f"use at least {MIN_LENGTH}" in capsys.readouterr().err
    assert usqa(url, "add", "lee", "--role", "viewer", "--password-stdin", stdin="LEE\n") == 2
    assert usqa(url, "add", "longname-lee", "--role", "viewer", "--password-stdin",
                stdin="longname-lee\n") == 2  # fmt: skip
    assert "must not be the account name" in capsys.readouterr().err
    with db.session_scope(url, readonly=True) as session:
        assert reviews.list_users(session) == []
    assert usqa(url, "add", "lee", "--role", "viewer", "--password-stdin", stdin=PASSWORD) == 0
    assert usqa(url, "add", "lee", "--role", "admin", "--no-password") == 2
    assert "already exists" in capsys.readouterr().err
    assert usqa(url, "passwd", "nobody", "--no-password") == 2
    assert "no account 'nobody'" in capsys.readouterr().err
    assert usqa(url, "add", "x", "--role", "superuser", "--no-password") == 2  # argparse
    assert [t[0] for t in trail(url)] == ["user_added"]


def test_the_password_is_asked_twice(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter([PASSWORD, PASSWORD + "!"])
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(answers))
    assert usqa(sqlite_url, "add", "lee", "--role", "viewer") == 2
    assert "the two passwords differ" in capsys.readouterr().err
    answers = iter([PASSWORD, PASSWORD])
    assert usqa(sqlite_url, "add", "lee", "--role", "viewer") == 0


def test_a_ledger_that_is_not_upgraded_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["user", "list", "--database-url", f"sqlite:///{tmp_path}/empty.db"]) == 2
    assert "usqa db upgrade" in capsys.readouterr().err

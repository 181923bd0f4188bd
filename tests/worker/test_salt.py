"""The pseudonym salt: the example placeholder and short salts are refused with a message
that says what to do; the ledger keeps a fingerprint of the salt (never the salt) and a
scoring process started with another salt, or none, warns; on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

import db
from db.models import SiteSetting
from db.site import SALT_FINGERPRINT, check_salt, salt_fingerprint
from worker.cli import main
from worker.errors import ConfigError
from worker.salt import check_salt_at_start
from worker.settings import MIN_SALT_BYTES, load_settings

GOOD = "3f9a1c0e7b2d4e6f8a0b1c2d3e4f5a6b"
OTHER = "0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f"
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "salt",
    ["CHANGE-ME", "CHANGE-ME-long-random-string", "change-me-please-now", "changeme1234567890"],
)
def test_the_example_placeholder_is_refused(salt: str) -> None:
    with pytest.raises(ConfigError, match=r"CHANGE-ME placeholder.*openssl rand -hex 32"):
        load_settings(environ={"USQA_PSEUDONYM_SALT": salt})


@pytest.mark.parametrize("salt", ["s", "site-secret", "x" * (MIN_SALT_BYTES - 1)])
def test_short_salts_are_refused(salt: str) -> None:
    size = len(salt.encode())
    with pytest.raises(ConfigError, match=f"is {size} bytes long, expected at least 16"):
        load_settings(environ={"USQA_PSEUDONYM_SALT": salt})


@pytest.mark.parametrize("salt", ["x" * MIN_SALT_BYTES, "é" * 8, GOOD])
def test_long_enough_salts_are_taken(salt: str) -> None:
    assert load_settings(environ={"USQA_PSEUDONYM_SALT": salt}).pseudonym_salt == salt


def test_no_salt_is_fine_and_records_nothing() -> None:
    assert load_settings(environ={"USQA_PSEUDONYM_SALT": "  "}).pseudonym_salt is None


def test_a_bad_salt_stops_a_command_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.MonkeyPatch.context() as mp:  # any command reads the settings
        mp.setenv("USQA_PSEUDONYM_SALT", "CHANGE-ME")
        assert main(["report", "--database-url", "sqlite://"]) == 2
    assert "USQA_PSEUDONYM_SALT is still the CHANGE-ME placeholder" in capsys.readouterr().err


def test_the_fingerprint_reveals_nothing_and_tells_salts_apart() -> None:
    fp = salt_fingerprint(GOOD)
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert fp == salt_fingerprint(GOOD) and fp != salt_fingerprint(OTHER)
    assert GOOD not in fp and fp not in GOOD


@pytest.fixture
def url(any_url: str) -> str:
    """These tests' name for a fresh ledger on each database."""
    return any_url


@pytest.mark.integration
def test_fingerprint_is_recorded_then_compared(url: str) -> None:
    with db.session_scope(url) as s:
        assert check_salt(s, None, process="h:1").outcome == "none"
    with db.session_scope(url) as s:
        first = check_salt(s, GOOD, process="scanner-host:11", now=T0)
    assert first.outcome == "recorded" and first.fingerprint == salt_fingerprint(GOOD)
    with db.session_scope(url) as s:
        same = check_salt(s, GOOD, process="other-host:12")
    assert same.outcome == "same" and same.previous_by == "scanner-host:11"
    with db.session_scope(url) as s:
        missing = check_salt(s, None, process="other-host:13")
    assert missing.outcome == "missing" and missing.previous == salt_fingerprint(GOOD)
    with db.session_scope(url) as s:
        changed = check_salt(s, OTHER, process="new-host:14")
    assert changed.outcome == "changed" and changed.previous == salt_fingerprint(GOOD)
    assert changed.previous_at == T0 and changed.previous_by == "scanner-host:11"
    with db.session_scope(url, readonly=True) as s:
        (row,) = s.scalars(select(SiteSetting)).all()
    assert (row.name, row.value, row.recorded_by) == (
        SALT_FINGERPRINT,
        salt_fingerprint(OTHER),
        "new-host:14",
    )
    assert GOOD not in row.value and OTHER not in row.value  # never the salt itself


@pytest.mark.integration
def test_start_up_warns_in_words_for_it(url: str, caplog: pytest.LogCaptureFixture) -> None:
    def start(salt: str | None) -> str:
        caplog.clear()
        env = {"USQA_DATABASE_URL": url, **({"USQA_PSEUDONYM_SALT": salt} if salt else {})}
        with caplog.at_level(logging.INFO, logger="worker.salt"):
            check_salt_at_start(load_settings(environ=env))
        return caplog.text

    assert "fingerprint" in start(GOOD) and "WARNING" not in caplog.text
    assert start(GOOD) == ""
    changed = start(OTHER)
    assert "WARNING" in changed and "is not the salt this ledger was filled with" in changed
    assert salt_fingerprint(GOOD) in changed and "every operator appears twice" in changed
    missing = start(None)
    assert "WARNING" in missing and "USQA_PSEUDONYM_SALT is not set on this machine" in missing
    assert GOOD not in changed + missing and OTHER not in changed + missing


@pytest.mark.integration
@pytest.mark.slow
def test_usqa_run_checks_the_salt_at_start(
    tmp_path: Path,
    random_weights: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ledger = f"sqlite:///{tmp_path / 'usqa.db'}"
    (tmp_path / "dropbox").mkdir()
    for key in ("USQA_BROKER_URL", "USQA_METRICS_PORT", "USQA_HEARTBEAT_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("USQA_WEIGHTS", str(random_weights))
    monkeypatch.setenv("USQA_THREADS", "1")
    monkeypatch.setenv("USQA_DATABASE_URL", ledger)
    args = ["run", "--watch", str(tmp_path / "dropbox"), "--once"]
    monkeypatch.setenv("USQA_PSEUDONYM_SALT", GOOD)
    assert main(args) == 0
    with db.session_scope(ledger, readonly=True) as s:
        assert s.get(SiteSetting, SALT_FINGERPRINT).value == salt_fingerprint(GOOD)  # type: ignore[union-attr]
    capsys.readouterr()
    monkeypatch.setenv("USQA_PSEUDONYM_SALT", OTHER)
    assert main(args) == 0
    assert "is not the salt this ledger was filled with" in capsys.readouterr().err

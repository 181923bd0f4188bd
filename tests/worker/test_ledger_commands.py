"""`usqa scans`, `usqa status` and `usqa db` on a seeded ledger (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

import db
from db import ledger
from db.models import Scan
from worker.cli import main
from worker.commands.scans import parse_since
from worker.errors import ConfigError

pytestmark = pytest.mark.integration


def seed(url: str) -> dict[str, int]:
    now = datetime.now(UTC)
    with db.session_scope(url) as s:
        ids = {
            name: ledger.record_received(
                s, path=f"/drop/{name}", size_bytes=1, mtime_ns=1, sha256=f"{i:064x}", now=now
            ).id
            for i, name in enumerate(["ok.png", "bad.dcm", "waiting.png"])
        }
        ledger.heartbeat(s, name="host:1", hostname="host", pid=1, mode="celery")
        taken = ledger.claim(
            s,
            [ids["ok.png"], ids["bad.dcm"]],
            token="t",
            worker="host:1",
            stale_before=now - timedelta(hours=1),
            dead_before=now - timedelta(hours=1),
        )
        ledger.ensure_model_version(s, "abc123def456")
        ok = next(t for t in taken if t.id == ids["ok.png"])
        summary = type(
            "S", (), dict(score=81.5, mean=81.5, min=80.0, p10=80.2, grade="good", frames_scored=1)
        )()
        ledger.write_score(
            s,
            ok,
            "t",
            model_version="abc123def456",
            aggregate="mean",
            summary=summary,
            frame_scores=[(0, 81.5)],
        )
        ledger.finish(
            s,
            ids["bad.dcm"],
            "t",
            ledger.Outcome("failed", "bad.dcm: truncated"),
            model_version="abc123def456",
        )
    return ids


def test_scans_json_lists_every_required_field(
    any_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = seed(any_url)
    assert main(["scans", "--json", "--database-url", any_url]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    by_id = {x["id"]: x for x in lines}
    ok = by_id[ids["ok.png"]]
    assert ok["status"] == "scored" and ok["score"] == 81.5 and ok["grade"] == "good"
    assert ok["model_version"] == "abc123def456" and ok["attempts"] == 1 and ok["sha256"]
    assert by_id[ids["bad.dcm"]]["reason"] == "bad.dcm: truncated"
    assert main(["scans", "--json", "--status", "queued", "--database-url", any_url]) == 0
    assert [json.loads(x)["path"] for x in capsys.readouterr().out.splitlines()] == [
        "/drop/waiting.png"
    ]
    assert main(["scans", "--since", "1h", "--limit", "1", "--database-url", any_url]) == 0
    out = capsys.readouterr().out
    assert "waiting.png" in out and "ok.png" not in out
    assert main(["scans", "--since", "2999-01-01", "--database-url", any_url]) == 0
    assert "no scans match" in capsys.readouterr().out


def test_status_reports_and_alerts_on_waiting_scans(
    any_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = seed(any_url)
    assert main(["status", "--json", "--database-url", any_url]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"] == {
        "queued": 1,
        "processing": 0,
        "scored": 1,
        "skipped": 0,
        "failed": 1,
    }
    assert report["oldest_waiting"]["id"] == ids["waiting.png"]
    assert report["queue"] == {"mode": "embedded", "waiting": 1, "unacked": None}
    assert [w["name"] for w in report["workers"]] == ["host:1"] and report["ok"]
    assert report["last_scored_at"] is not None
    with db.session_scope(any_url) as s:  # the queued scan now waited an hour
        s.execute(
            update(Scan)
            .where(Scan.id == ids["waiting.png"])
            .values(received_at=datetime.now(UTC) - timedelta(hours=1))
        )
    assert main(["status", "--database-url", any_url, "--max-wait", "600"]) == 1
    text = capsys.readouterr().out
    assert f"scan {ids['waiting.png']} has waited" in text and "PROBLEM" in text
    assert "host:1" in text


def test_status_with_an_unreachable_broker_exits_1(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["status", "--json", "--database-url", sqlite_url, "--broker-url", "redis://127.0.0.1:1/0"]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and report["queue"]["error"] and not report["ok"]


def test_db_upgrade_and_current(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/new.db"
    assert main(["db", "current", "--database-url", url]) == 1
    assert "schema empty" in capsys.readouterr().out
    assert main(["db", "upgrade", "--database-url", url]) == 0
    assert "upgraded from empty" in capsys.readouterr().out
    assert main(["db", "current", "--json", "--database-url", url]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["current"] == state["head"] == db.head_revision()
    assert main(["scans", "--database-url", f"sqlite:///{tmp_path}/other.db"]) == 2
    assert "usqa db upgrade" in capsys.readouterr().err


def test_parse_since() -> None:
    now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert parse_since("30m", now) == now - timedelta(minutes=30)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("2025-02-01T08:00+01:00") == datetime(2025, 2, 1, 7, 0, tzinfo=UTC)
    assert parse_since("2025-02-01").tzinfo is not None
    with pytest.raises(ConfigError, match="--since"):
        parse_since("yesterday")

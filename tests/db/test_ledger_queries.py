"""The ledger questions and writes that moved out of ``worker/`` (counts, live workers'
model versions, known scores of a batch, the "file gone or changed" check, the savepoint
score writers). SQLite only: no services needed."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

import db
from db import ledger
from db.models import FAILED, PROCESSING, SCORED, Scan

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def url(sqlite_url: str) -> str:
    """These tests' name for a fresh SQLite ledger."""
    return sqlite_url


def summary(score: float = 70.0) -> SimpleNamespace:
    return SimpleNamespace(
        score=score, mean=score, min=score, p10=score, grade="average", frames_scored=1
    )


def add(url: str, path: str, sha: str, status: str | None = None, **values: object) -> int:
    with db.session_scope(url) as s:
        scan_id = ledger.record_received(
            s, path=path, size_bytes=10, mtime_ns=1, sha256=sha, now=NOW
        ).id
        if status is not None or values:
            s.execute(
                update(Scan)
                .where(Scan.id == scan_id)
                .values(**({"status": status} if status else {}), **values)
            )
    return scan_id


def held(url: str, scan_id: int) -> Scan:
    with db.session_scope(url) as s:
        s.execute(update(Scan).where(Scan.id == scan_id).values(status=PROCESSING, claim_token="t"))
        scan = s.get(Scan, scan_id)
        assert scan is not None
        s.expunge(scan)
        return scan


def test_counts_of_waiting_and_failed_scans_below_a_folder(url: str) -> None:
    add(url, "/drop/a.dcm", "a" * 64)
    add(url, "/drop/sub/b.dcm", "b" * 64, PROCESSING)
    add(url, "/dropped/c.dcm", "c" * 64)  # a sibling folder, not below /drop
    add(url, "/drop/d.dcm", "d" * 64, FAILED, finished_at=NOW)
    add(url, "/drop/e.dcm", "e" * 64, FAILED, finished_at=NOW - timedelta(hours=1))
    with db.session_scope(url, readonly=True) as s:
        assert ledger.queued_count(s) == 2
        assert ledger.active_under(s, "/drop") == 2
        assert ledger.active_under(s, "/drop/") == 2
        assert ledger.failed_under(s, "/drop", NOW - timedelta(minutes=1)) == 1
        assert ledger.failed_under(s, "/elsewhere", NOW - timedelta(days=1)) == 0


def test_live_model_versions_leave_out_stopped_and_silent_workers(url: str) -> None:
    with db.session_scope(url) as s:
        for name, version in [("a", "v1"), ("b", "v2"), ("c", None), ("d", "v1")]:
            ledger.heartbeat(
                s, name=name, hostname="h", pid=1, mode="celery", model_version=version
            )
        ledger.heartbeat(s, name="d", hostname="h", pid=1, mode="celery", stopped=True)
        now = ledger.db_now(s)
    with db.session_scope(url, readonly=True) as s:
        alive = ledger.live_model_versions(s, alive_since=now - timedelta(minutes=1))
        assert sorted(alive, key=str) == sorted(["v1", "v2", None], key=str)
        assert ledger.live_model_versions(s, alive_since=now + timedelta(minutes=1)) == []


def test_known_scores_find_the_first_scan_by_content_and_by_sop_instance(url: str) -> None:
    first = held(url, add(url, "/drop/1.dcm", "a" * 64, sop_instance_uid="1.2.3"))
    second = held(url, add(url, "/drop/2.dcm", "b" * 64, sop_instance_uid="1.2.4"))
    with db.session_scope(url) as s:
        ledger.ensure_model_version(s, "v1")
        for scan in (first, second):
            entry = ledger.ScoreEntry(scan, summary(), [(0, 70.0)])
            done = ledger.try_write_score(s, entry, "t", model_version="v1", aggregate="mean")
            assert done.written
    with db.session_scope(url, readonly=True) as s:
        by_sha, by_uid = ledger.known_scores(s, "v1", ["a" * 64, "z" * 64], ["1.2.4", None])
        assert {k: v.id for k, v in by_sha.items()} == {"a" * 64: first.id, "b" * 64: second.id}
        assert {k: v.id for k, v in by_uid.items()} == {"1.2.3": first.id, "1.2.4": second.id}
        assert ledger.known_scores(s, "v2", ["a" * 64]) == ({}, {})
        by_sha, by_uid = ledger.known_scores(s, "v1", ["b" * 64])
        assert ({k: v.id for k, v in by_sha.items()}, by_uid) == (
            {"b" * 64: second.id},
            {"1.2.4": by_sha["b" * 64]},
        )


def test_the_file_gone_or_changed_check(url: str, tmp_path: Path) -> None:
    path = tmp_path / "a.dcm"
    path.write_bytes(b"0123456789")
    scan_id = add(url, str(path), "a" * 64, SCORED)
    with db.session_scope(url) as s:
        st = path.stat()
        s.execute(update(Scan).where(Scan.id == scan_id).values(mtime_ns=st.st_mtime_ns))
    with db.session_scope(url, readonly=True) as s:
        scan = s.get(Scan, scan_id)
        assert scan is not None
        assert ledger.file_location(scan) == str(path)
        assert ledger.file_problem(scan) is None
        path.write_bytes(b"01234567890")
        assert ledger.file_problem(scan) == f"{path}: the file changed after it was received"
        path.unlink()
        assert ledger.file_problem(scan) == (
            f"{path}: the file is gone or unreadable ({os.strerror(2)})"
        )
        scan.disposition = "deleted"
        assert ledger.file_location(scan) is None
        assert ledger.file_problem(scan) == "the file was deleted after scoring"


def test_the_savepoint_writers_turn_a_duplicate_into_an_answer(url: str) -> None:
    a = held(url, add(url, "/drop/a.dcm", "a" * 64))
    copy = held(url, add(url, "/drop/copy.dcm", "a" * 64))
    other = held(url, add(url, "/drop/b.dcm", "b" * 64))
    entries = [ledger.ScoreEntry(scan, summary(), [(0, 70.0)]) for scan in (a, copy, other)]
    with db.session_scope(url) as s:
        ledger.ensure_model_version(s, "v1")
        assert ledger.try_write_scores(s, "t", entries, "v1", "mean") is False  # a, copy clash
        first = ledger.try_write_score(s, entries[0], "t", model_version="v1", aggregate="mean")
        assert first == ledger.ScoreWrite(True)
        got = ledger.try_write_score(s, entries[1], "t", model_version="v1", aggregate="mean")
        assert (got.written, got.duplicate and got.duplicate[0].id) == (False, a.id)
        assert got.duplicate is not None and got.duplicate[1] == "content"
        assert ledger.try_write_score(
            s, entries[1], "lost", model_version="v2", aggregate="mean"
        ) == ledger.ScoreWrite(False)
        assert ledger.try_write_scores(s, "t", entries[2:], "v1", "mean") is True
    with db.session_scope(url, readonly=True) as s:
        statuses = {scan.id: scan.status for scan in s.query(Scan)}
    assert statuses == {a.id: SCORED, copy.id: PROCESSING, other.id: SCORED}


def test_a_conflict_with_no_scored_twin_is_raised(url: str) -> None:
    scan = held(url, add(url, "/drop/a.dcm", "a" * 64))
    entry = ledger.ScoreEntry(scan, summary(), [(0, 70.0), (0, 71.0)])  # one frame twice
    with db.session_scope(url) as s, pytest.raises(IntegrityError):
        ledger.ensure_model_version(s, "v1")
        ledger.try_write_score(s, entry, "t", model_version="v1", aggregate="mean")

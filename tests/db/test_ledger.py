"""The ledger on both databases: schema, constraints, claims, outcomes, reconciling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError

import db
from db import ledger, queries
from db.migrate import include_object
from db.models import Base, FrameScore, Scan, ScanScore, WorkerProcess
from worker.errors import ConfigError, DatabaseUnavailableError

pytestmark = pytest.mark.integration

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def summary(score: float = 70.0, frames: int = 2) -> SimpleNamespace:
    return SimpleNamespace(
        score=score, mean=score, min=score - 5, p10=score - 4, grade="average", frames_scored=frames
    )


@pytest.fixture
def url(any_url: str) -> str:
    """These tests' name for a fresh ledger on each database."""
    return any_url


def add(url: str, name: str, sha: str, **kw: Any) -> int:
    with db.session_scope(url) as s:
        return ledger.record_received(
            s, path=f"/drop/{name}", size_bytes=10, mtime_ns=1, sha256=sha, now=NOW, **kw
        ).id


def claim(url: str, ids: list[int], token: str, worker: str = "host:1") -> list[Scan]:
    with db.session_scope(url) as s:
        ledger.heartbeat(s, name=worker, hostname="host", pid=1, mode="embedded")
        return ledger.claim(
            s,
            ids,
            token=token,
            worker=worker,
            stale_before=NOW - timedelta(hours=1),
            dead_before=NOW - timedelta(days=3650),
            now=NOW,
        )


def score(url: str, scan: Scan, token: str, version: str = "v1") -> bool:
    with db.session_scope(url) as s:
        ledger.ensure_model_version(s, version, weights_sha256=version * 8)
        return ledger.write_score(
            s,
            scan,
            token,
            model_version=version,
            aggregate="mean",
            summary=summary(),
            frame_scores=[(0, 71.0), (3, 69.0)],
        )


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_migrations_match_the_models(migrated_url: str) -> None:
    url = migrated_url  # a real upgrade, not the session's template
    assert db.current_revision(url) == db.head_revision()
    db.require_current(url)
    with db.get_engine(url).connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"include_object": include_object, "compare_type": True}
        )
        diff = compare_metadata(context, Base.metadata)
    assert diff == []
    db.upgrade(url)  # idempotent
    assert db.current_revision(url) == db.head_revision()


def test_empty_database_asks_for_upgrade(tmp_path: Path) -> None:
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    assert db.current_revision(empty) is None
    with pytest.raises(ConfigError, match="usqa db upgrade"):
        db.require_current(empty)
    with pytest.raises(ConfigError, match="usqa db upgrade"), db.session_scope(empty) as s:
        s.execute(select(Scan)).all()


def test_scan_lifecycle_and_listing(url: str) -> None:
    scan_id = add(url, "a.png", "a" * 64)
    [scan] = claim(url, [scan_id], "t1")
    assert scan.status == "processing" and scan.attempts == 1
    assert score(url, scan, "t1")
    with db.session_scope(url, readonly=True) as s:
        [row] = queries.list_scans(s)
        frames = s.scalars(select(FrameScore).order_by(FrameScore.frame_index)).all()
        state = queries.status_summary(s)
    assert row["status"] == "scored" and row["score"] == 70.0 and row["grade"] == "average"
    assert row["model_version"] == "v1" and row["attempts"] == 1 and row["reason"] is None
    assert [(f.frame_index, f.score) for f in frames] == [(0, 71.0), (3, 69.0)]
    assert state.counts["scored"] == 1 and state.oldest_waiting_id is None
    assert state.last_scored_at is not None and state.last_scored_at.tzinfo is not None
    assert [w.name for w in state.workers] == ["host:1"]


def test_same_content_or_sop_instance_is_never_scored_twice(url: str) -> None:
    first, copy, same_sop = (
        add(url, "a.png", "a" * 64),
        add(url, "b.png", "a" * 64),
        add(url, "c.dcm", "c" * 64),
    )
    scans = {s.id: s for s in claim(url, [first, copy, same_sop], "t")}
    scans[same_sop].sop_instance_uid = "1.2.3"
    scans[first].sop_instance_uid = "1.2.3"
    assert score(url, scans[first], "t")
    for other in (copy, same_sop):
        with pytest.raises(IntegrityError):
            score(url, scans[other], "t")
    with db.session_scope(url) as s:
        hit = ledger.find_scored_duplicate(
            s, model_version="v1", sha256="a" * 64, sop_instance_uid=None, exclude_scan_id=copy
        )
        by_sop = ledger.find_scored_duplicate(
            s, model_version="v1", sha256="c" * 64, sop_instance_uid="1.2.3", exclude_scan_id=3
        )
        none = ledger.find_scored_duplicate(
            s, model_version="v2", sha256="a" * 64, sop_instance_uid="1.2.3", exclude_scan_id=copy
        )
    assert hit is not None and hit[0].id == first and hit[1] == "content"
    assert by_sop is not None and by_sop[0].id == first and by_sop[1] == "SOP instance"
    assert none is None
    with db.session_scope(url) as s:  # a new model version may score the same content
        s.execute(
            update(Scan).where(Scan.id == first).values(status="processing", claim_token="t2")
        )
    assert score(url, scans[first], "t2", version="v2")
    with db.session_scope(url, readonly=True) as s:
        assert s.scalar(select(ScanScore.id).where(ScanScore.model_version == "v2")) is not None


def test_claims_are_exclusive_and_retries_keep_their_claim(url: str) -> None:
    ids = [add(url, f"{i}.png", f"{i:064x}") for i in range(3)]
    assert [s.id for s in claim(url, ids, "A")] == ids
    assert claim(url, ids, "B", worker="host:2") == []  # held by a live worker
    again = claim(url, ids[:1], "A")  # the same task retried
    assert [s.attempts for s in again] == [2]
    with db.session_scope(url) as s:
        # worker A's claim was lost: it cannot write an outcome any more
        taken = ledger.claim(
            s,
            ids[1:2],
            token="C",
            worker="host:3",
            stale_before=NOW + timedelta(seconds=1),  # everything started before is stale
            dead_before=NOW - timedelta(days=3650),
            now=NOW,
        )
        assert [t.id for t in taken] == ids[1:2]
    with db.session_scope(url) as s:
        assert not ledger.finish(s, ids[1], "A", ledger.Outcome("failed", "x"))
        assert ledger.finish(s, ids[1], "C", ledger.Outcome("failed", "bad file"))
        assert ledger.release(s, ids, "A", "retrying: database away") == [ids[0], ids[2]]
    with db.session_scope(url, readonly=True) as s:
        rows = {r["id"]: r for r in queries.list_scans(s)}
    assert rows[ids[1]]["status"] == "failed" and rows[ids[1]]["reason"] == "bad file"
    assert rows[ids[0]]["status"] == "queued" and rows[ids[0]]["reason"].startswith("retrying")


def test_a_dead_workers_scans_are_reclaimed_and_reconciled(url: str) -> None:
    ids = [add(url, f"{i}.png", f"{i:064x}") for i in range(2)]
    claim(url, ids[:1], "A", worker="host:dead")
    with db.session_scope(url) as s:  # its heartbeat stops: last seen long ago
        s.execute(
            update(WorkerProcess)
            .where(WorkerProcess.name == "host:dead")
            .values(last_seen_at=NOW - timedelta(hours=2))
        )
    with db.session_scope(url) as s:
        stuck = ledger.stuck_scans(
            s,
            queued_before=NOW + timedelta(seconds=1),  # ids[1] has been queued "too long"
            stale_before=NOW - timedelta(hours=1),
            dead_before=NOW - timedelta(minutes=5),
        )
        assert sorted(x.id for x in stuck) == ids
        assert sorted(ledger.requeue(s, stuck)) == ids
        assert ledger.requeue(s, stuck) == []  # state changed: second pass does nothing
    with db.session_scope(url, readonly=True) as s:
        assert {r["status"] for r in queries.list_scans(s)} == {"queued"}
        assert ledger.queued_ids(s) == ids


def test_duplicate_rows_and_known_files(url: str) -> None:
    first = add(url, "a.png", "a" * 64)
    with db.session_scope(url) as s:
        original = ledger.find_original(s, "a" * 64)
        assert original is not None and original.id == first
        copy = ledger.record_received(
            s,
            path="/drop/copy.png",
            size_bytes=10,
            mtime_ns=2,
            sha256="a" * 64,
            duplicate_of=original,
        )
        assert copy.status == "skipped" and f"scan {first}" in (copy.reason or "")
        assert "/drop/a.png" in (copy.reason or "")
        known = ledger.known_files(s, ["/drop/a.png", "/drop/none.png"])
        many = ledger.find_originals(s, ["a" * 64, "b" * 64])
        assert list(many) == ["a" * 64] and many["a" * 64].id == first
    assert list(known) == ["/drop/a.png"]


def test_a_batch_is_recorded_in_order_with_its_copies(url: str) -> None:
    """New contents are queued; copies of a known content, or of one earlier in the same
    batch, are skipped with the original's id; empty files are never copies."""
    first = add(url, "known.png", "k" * 64)
    files = [
        ("/drop/new.png", 10, 5, "n" * 64),
        ("/drop/again-known.png", 10, 6, "k" * 64),
        ("/drop/empty-1.png", 0, 7, "e" * 64),
        ("/drop/again-new.png", 10, 8, "n" * 64),
        ("/drop/empty-2.png", 0, 9, "e" * 64),
        ("/drop/other.png", 12, 10, "o" * 64),
    ]
    with db.session_scope(url) as s:
        originals = ledger.find_originals(s, ["n" * 64, "k" * 64, "o" * 64])
        got = ledger.record_received_many(s, files, originals=originals, now=NOW)
    assert [r.path for r in got] == [f[0] for f in files]
    new, copy_known, empty_1, copy_new, empty_2, other = got
    assert copy_known.duplicate_of == first and "/drop/known.png" in (copy_known.reason or "")
    assert copy_new.duplicate_of == new.id and f"scan {new.id} (/drop/new.png)" in (
        copy_new.reason or ""
    )
    assert [r.duplicate_of for r in (new, empty_1, empty_2, other)] == [None] * 4
    with db.session_scope(url, readonly=True) as s:
        rows = {r.id: r for r in s.scalars(select(Scan)).all()}
    assert len({r.id for r in got} | {first}) == 7
    for received, (path, size, mtime, sha) in zip(got, files, strict=True):
        row = rows[received.id]
        assert (row.path, row.size_bytes, row.mtime_ns, row.sha256) == (path, size, mtime, sha)
        assert row.received_at == NOW and row.attempts == 0
        if received.duplicate_of is None:
            assert (row.status, row.queued_at, row.duplicate_of_id) == ("queued", NOW, None)
        else:
            assert (row.status, row.finished_at) == ("skipped", NOW)
            assert (row.duplicate_of_id, row.reason) == (received.duplicate_of, received.reason)


def test_pending_disposal_only_under_the_folder(url: str) -> None:
    ids = [add(url, "x/a.png", "a" * 64), add(url, "b.png", "b" * 64)]
    with db.session_scope(url) as s:
        s.add(
            Scan(
                path="/drop2/c.png",
                size_bytes=1,
                mtime_ns=1,
                sha256="c" * 64,
                status="failed",
                received_at=NOW,
            )
        )
        for scan in claim(url, ids, "t"):
            ledger.finish(s, scan.id, "t", ledger.Outcome("failed", "bad"))
    with db.session_scope(url) as s:
        pending = ledger.pending_disposal(s, "/drop")
        assert [p.id for p in pending] == ids
        ledger.mark_disposed(s, ids[0], "moved", "/drop/failed/x/a.png")
        assert [p.id for p in ledger.pending_disposal(s, "/drop/")] == ids[1:]


def test_timestamps_are_utc_aware(url: str) -> None:
    scan_id = add(url, "a.png", "a" * 64)
    with db.session_scope(url, readonly=True) as s:
        scan = s.get(Scan, scan_id)
        assert scan is not None and scan.received_at == NOW and scan.received_at.tzinfo
        since = queries.list_scans(s, since=NOW + timedelta(seconds=1))
    assert since == []


def test_metadata_columns_are_typed_and_trimmed() -> None:
    cols = ledger.metadata_columns(
        {
            "sop_instance_uid": "1.2.840.1",
            "manufacturer": "x" * 300,
            "study_datetime": "2024-05-06T07:08:09",
            "acquisition_datetime": "not a date",
            "frame_time_ms": "33.3",
            "burned_in_annotation": True,
            "software_versions": ["1.0", "2.0"],
            "patient_name": "SHOULD NOT APPEAR",
        }
    )
    assert cols["sop_instance_uid"] == "1.2.840.1"
    assert cols["manufacturer"] == "x" * 128
    assert cols["study_datetime"] == datetime(2024, 5, 6, 7, 8, 9)
    assert cols["acquisition_datetime"] is None
    assert cols["frame_time_ms"] == pytest.approx(33.3)
    assert cols["burned_in_annotation"] == "YES"
    assert cols["software_versions"] == "1.0\\2.0"
    assert "patient_name" not in cols and cols["operator"] is None


def test_session_scope_rolls_back_on_error(url: str) -> None:
    with pytest.raises(RuntimeError), db.session_scope(url) as s:
        ledger.record_received(s, path="/drop/a", size_bytes=1, mtime_ns=1, sha256="a" * 64)
        raise RuntimeError("boom")
    with db.session_scope(url, readonly=True) as s:
        assert queries.list_scans(s) == []


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wal.db'}"
    db.upgrade(url)
    with db.get_engine(url).connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert (conn.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0) >= 1000


def test_unreachable_server_is_a_transient_error() -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/none"  # nothing listens on port 1
    with pytest.raises(DatabaseUnavailableError, match="not available"), db.session_scope(url) as s:
        s.execute(text("SELECT 1"))
    with pytest.raises(DatabaseUnavailableError):
        db.current_revision(url)


@pytest.mark.parametrize("bad", ["sqlite://", "not a url", "sqlite:///:memory:"])
def test_bad_database_urls_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError, match="USQA_DATABASE_URL"):
        db.get_engine(bad)


def test_a_relative_sqlite_url_follows_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sqlite:///usqa.db` means ./usqa.db where the command runs, even in a process that
    already opened it elsewhere (one engine per file, not per URL string)."""
    from db.session import get_engine

    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    monkeypatch.chdir(first)
    engine_a = get_engine("sqlite:///usqa.db")
    monkeypatch.chdir(second)
    engine_b = get_engine("sqlite:///usqa.db")
    assert engine_a is not engine_b
    assert engine_a.url.database == str(first / "usqa.db")
    assert engine_b.url.database == str(second / "usqa.db")


def _entries(scans: list[Scan]) -> list[ledger.ScoreEntry]:
    return [
        ledger.ScoreEntry(scan=s, summary=summary(), frame_scores=[(0, 70.0), (1, 72.0)])
        for s in scans
    ]


def test_a_batch_of_scores_is_written_at_once_only_if_every_claim_holds(url: str) -> None:
    ids = [add(url, f"{i}.png", f"{i + 10:064x}") for i in range(3)]
    scans = claim(url, ids, "A")
    with db.session_scope(url) as s:
        ledger.ensure_model_version(s, "v1", weights_sha256="v1" * 8)
        # a claim lost to another worker: nothing is written, the caller goes scan by scan
        s.execute(update(Scan).where(Scan.id == ids[2]).values(claim_token="B"))
        assert not ledger.write_scores(s, "A", _entries(scans), "v1", "mean")
        assert s.scalar(select(ScanScore.id)) is None
        s.execute(update(Scan).where(Scan.id == ids[2]).values(claim_token="A"))
        assert ledger.write_scores(s, "A", _entries(scans), "v1", "mean")
    with db.session_scope(url, readonly=True) as s:
        rows = s.scalars(select(Scan).order_by(Scan.id)).all()
        assert [(r.status, r.claim_token, r.model_version) for r in rows] == [
            ("scored", None, "v1")
        ] * 3
        assert len(s.scalars(select(ScanScore)).all()) == 3
        frames = s.scalars(select(FrameScore).order_by(FrameScore.scan_id)).all()
        assert [(f.scan_id, f.frame_index, f.score) for f in frames][:2] == [
            (ids[0], 0, 70.0),
            (ids[0], 1, 72.0),
        ]
        assert len(frames) == 6


def test_a_duplicate_in_a_batch_of_scores_raises_and_writes_nothing(url: str) -> None:
    first, copy, other = (
        add(url, "a.png", "d" * 64),
        add(url, "b.png", "d" * 64),
        add(url, "c.png", "e" * 64),
    )
    scans = {s.id: s for s in claim(url, [first, copy, other], "A")}
    assert score(url, scans[first], "A")  # scored meanwhile
    with db.session_scope(url) as s, pytest.raises(IntegrityError), s.begin_nested():
        ledger.write_scores(s, "A", _entries([scans[copy], scans[other]]), "v1", "mean")
    with db.session_scope(url, readonly=True) as s:
        assert s.scalar(select(Scan.status).where(Scan.id == other)) == "processing"
        assert len(s.scalars(select(ScanScore)).all()) == 1


def test_header_columns_are_set_on_held_scans_only(url: str) -> None:
    ids = [add(url, f"{i}.dcm", f"{i + 20:064x}") for i in range(3)]
    claim(url, ids, "A")
    with db.session_scope(url) as s:
        s.execute(update(Scan).where(Scan.id == ids[2]).values(claim_token="B"))
        ledger.update_columns(
            s,
            "A",
            [
                (ids[0], {"modality": "US", "rows": 480}),
                (ids[1], {"rows": 240}),
                (ids[2], {"rows": 100}),  # held by another worker: untouched
            ],
        )
    with db.session_scope(url, readonly=True) as s:
        got = {r.id: (r.modality, r.rows) for r in s.scalars(select(Scan)).all()}
    assert got == {ids[0]: ("US", 480), ids[1]: (None, 240), ids[2]: (None, None)}

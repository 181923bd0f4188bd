"""process_scans, the one scoring path: outcomes, duplicates, idempotence, the attempt cap,
poison files. Real files, real decoder child, real SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import func, select, update

import db
from db import ledger
from db.models import FrameScore, ModelVersion, Scan, ScanScore, WorkerProcess
from tests.helpers.files import FAULTS, copy_dicom, make_settings, write_png
from tests.helpers.ledger import receive
from worker.scoring import RETRY, ScoringContext, process_scans

pytestmark = pytest.mark.integration


def rows(url: str) -> dict[int, Scan]:
    with db.session_scope(url, readonly=True) as s:
        return {r.id: r for r in s.scalars(select(Scan)).all()}


def edited_dicom(tmp_path: Path, name: str, **changes: str) -> Path:
    """The real cine with some header elements changed (same SOP instance UID)."""
    path = copy_dicom("examples_ybr_color.dcm", tmp_path / name)
    ds = pydicom.dcmread(path)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    ds.save_as(path)
    return path


def test_a_batch_writes_one_outcome_per_scan(
    any_url: str,
    tmp_path: Path,
    pipeline_for: Callable[..., ScoringContext],
    caplog: pytest.LogCaptureFixture,
) -> None:
    files = {
        "a": write_png(tmp_path / "a.png", 1),
        "b": write_png(tmp_path / "sub" / "b.png", 2, size=(40, 300)),
        "cine": edited_dicom(tmp_path, "cine.dcm", PatientName="Doe^Jane", PatientID="PID4711"),
        "ct": edited_dicom(
            tmp_path, "ct.dcm", Modality="CT", SOPInstanceUID=pydicom.uid.generate_uid()
        ),
    }
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\x00" * 200 + b"garbage")
    files["junk"] = junk
    ids = {k: receive(any_url, p) for k, p in files.items()}
    pipeline = pipeline_for(any_url)
    with caplog.at_level(logging.INFO, logger="worker.scoring"):
        result = process_scans(list(ids.values()), pipeline)
    assert result.statuses == {
        ids["a"]: "scored",
        ids["b"]: "scored",
        ids["cine"]: "scored",
        ids["ct"]: "skipped",
        ids["junk"]: "failed",
    }
    got = rows(any_url)
    assert "CT" in (got[ids["ct"]].reason or "")
    assert "junk.dcm" in (got[ids["junk"]].reason or "")
    cine = got[ids["cine"]]
    assert cine.modality == "US" and cine.manufacturer == "SonoSite, Inc."
    assert cine.frame_count == 30 and cine.crop_source is not None
    assert cine.patient_id_hash is None  # no salt configured: not recorded at all
    assert all(r.model_version == pipeline.model_version for r in got.values())
    assert all(r.attempts == 1 and r.finished_at is not None for r in got.values())
    with db.session_scope(any_url, readonly=True) as s:
        scores = {x.scan_id: x for x in s.scalars(select(ScanScore)).all()}
        frames = s.scalar(
            select(func.count()).select_from(FrameScore).where(FrameScore.scan_id == ids["cine"])
        )
        assert s.get(ModelVersion, pipeline.model_version) is not None
        assert s.get(WorkerProcess, pipeline.name) is not None
    assert set(scores) == {ids["a"], ids["b"], ids["cine"]}
    assert scores[ids["cine"]].frames_scored == 16 == frames
    assert all(
        0.0 <= x.score <= 100.0 and x.grade in ("good", "average", "poor") for x in scores.values()
    )
    outcome_lines = [r for r in caplog.records if getattr(r, "scan_id", None) is not None]
    assert sorted(r.scan_id for r in outcome_lines) == sorted(ids.values())  # type: ignore[attr-defined]
    said = {r.scan_id: r.getMessage() for r in outcome_lines}  # type: ignore[attr-defined]
    assert ", 1 frame): " in said[ids["a"]] and ", 16 frames): " in said[ids["cine"]]
    text = "\n".join(r.getMessage() + str(vars(r)) for r in caplog.records)
    assert "Doe" not in text and "PID4711" not in text


def test_a_process_row_names_its_model_as_soon_as_it_can_score(
    sqlite_url: str, random_weights: Path
) -> None:
    """A pool process starts (heartbeat) before its model is loaded: its ``workers`` row
    says which model it runs once loaded, without waiting for the next heartbeat."""
    pipeline = ScoringContext(make_settings(sqlite_url, random_weights, heartbeat_seconds=3600))
    try:
        pipeline.start()
        with db.session_scope(sqlite_url, readonly=True) as s:
            row = s.get(WorkerProcess, pipeline.name)
            assert row is not None and row.model_version is None
        pipeline.load()
        with db.session_scope(sqlite_url, readonly=True) as s:
            row = s.get(WorkerProcess, pipeline.name)
            assert row is not None and row.model_version == pipeline.model_version
    finally:
        pipeline.close()


def test_redelivery_changes_nothing(
    any_url: str, tmp_path: Path, pipeline_for: Callable[..., ScoringContext]
) -> None:
    ids = [receive(any_url, write_png(tmp_path / f"{i}.png", i)) for i in range(3)]
    pipeline = pipeline_for(any_url)
    first = process_scans(ids, pipeline)
    assert set(first.statuses.values()) == {"scored"}
    again = process_scans(ids, pipeline)
    assert again.statuses == {} and again.not_claimed == ids
    with db.session_scope(any_url, readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(ScanScore)) == 3
    assert {r.attempts for r in rows(any_url).values()} == {1}


def test_the_same_sop_instance_is_scored_once(
    any_url: str, tmp_path: Path, pipeline_for: Callable[..., ScoringContext]
) -> None:
    original = copy_dicom("examples_ybr_color.dcm", tmp_path / "orig.dcm")
    resent = edited_dicom(tmp_path, "resent.dcm", StationName="RESENT")  # other bytes, same UID
    third = edited_dicom(tmp_path, "third.dcm", StationName="AGAIN")
    ids = [receive(any_url, p) for p in (original, resent)]
    pipeline = pipeline_for(any_url)
    result = process_scans(ids, pipeline)  # both in one batch
    assert result.statuses == {ids[0]: "scored", ids[1]: "skipped"}
    later = receive(any_url, third)
    assert process_scans([later], pipeline).statuses == {later: "skipped"}  # a later batch
    got = rows(any_url)
    for dup in (ids[1], later):
        assert got[dup].duplicate_of_id == ids[0]
        assert f"duplicate of scan {ids[0]}" in (got[dup].reason or "")
        assert "SOP instance" in (got[dup].reason or "")


def test_a_file_that_changed_or_vanished_is_not_scored(
    sqlite_url: str, tmp_path: Path, pipeline_for: Callable[..., ScoringContext]
) -> None:
    changed = write_png(tmp_path / "changed.png", 1)
    gone = write_png(tmp_path / "gone.png", 2)
    ids = [receive(sqlite_url, changed), receive(sqlite_url, gone)]
    write_png(changed, 3, size=(70, 70))
    gone.unlink()
    result = process_scans(ids, pipeline_for(sqlite_url))
    assert result.statuses == {ids[0]: "skipped", ids[1]: "failed"}
    got = rows(sqlite_url)
    assert "changed after it was received" in (got[ids[0]].reason or "")
    assert "gone" in (got[ids[1]].reason or "")


def test_a_scan_past_the_attempt_cap_fails_with_its_last_problem(
    sqlite_url: str, tmp_path: Path, pipeline_for: Callable[..., ScoringContext]
) -> None:
    scan_id = receive(sqlite_url, write_png(tmp_path / "a.png", 1))
    with db.session_scope(sqlite_url) as s:
        s.execute(update(Scan).where(Scan.id == scan_id).values(attempts=3, reason="database away"))
    result = process_scans([scan_id], pipeline_for(sqlite_url, max_attempts=3))
    assert result.statuses == {}
    got = rows(sqlite_url)[scan_id]
    assert got.status == "failed" and got.attempts == 4
    assert got.reason == "gave up after 3 attempts; last problem: database away"


def test_poison_files_fail_and_their_neighbours_are_scored(
    sqlite_url: str,
    tmp_path: Path,
    pipeline_for: Callable[..., ScoringContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(FAULTS))
    monkeypatch.setenv("USQA_TEST_FAULTS", "1")
    crash = write_png(tmp_path / "crash-decoder.png", 1)
    hang = write_png(tmp_path / "hang-decoder.png", 2)
    good = [write_png(tmp_path / f"good{i}.png", 10 + i) for i in range(2)]
    ids = [receive(sqlite_url, p) for p in (good[0], crash, hang, good[1])]
    pipeline = pipeline_for(sqlite_url, decode_timeout=3.0, max_attempts=3)
    result = process_scans(ids, pipeline)
    assert result.statuses == {ids[0]: "scored", ids[1]: RETRY, ids[2]: "failed", ids[3]: "scored"}
    assert result.retry == [ids[1]]
    got = rows(sqlite_url)
    assert got[ids[1]].status == "queued" and "attempt 1 of 3" in (got[ids[1]].reason or "")
    assert "longer than 3 s" in (got[ids[2]].reason or "")
    for _ in range(2):  # the runner/Celery re-send it after a backoff; the cap ends it
        result = process_scans([ids[1]], pipeline)
    assert result.statuses == {ids[1]: "failed"}
    crashed = rows(sqlite_url)[ids[1]]
    assert crashed.attempts == 3
    assert "SIGSEGV" in (crashed.reason or "") and "failed after 3 attempts" in (
        crashed.reason or ""
    )


def test_the_frame_scores_of_a_batch_are_written_in_one_insert(
    any_url: str, tmp_path: Path, pipeline_for: Callable[..., ScoringContext]
) -> None:
    from sqlalchemy import event

    ids = [receive(any_url, write_png(tmp_path / f"{i}.png", i)) for i in range(3)]
    ids.append(receive(any_url, copy_dicom("examples_ybr_color.dcm", tmp_path / "cine.dcm")))
    pipeline = pipeline_for(any_url)
    pipeline.load()
    inserts: list[bool] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO FRAME_SCORES"):
            inserts.append(True)

    engine = db.get_engine(any_url)
    event.listen(engine, "before_cursor_execute", seen)
    try:
        result = process_scans(ids, pipeline)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert set(result.statuses.values()) == {"scored"}
    assert len(inserts) == 1
    with db.session_scope(any_url, readonly=True) as s:
        for scan in s.scalars(select(ScanScore)).all():
            frames = s.scalar(
                select(func.count())
                .select_from(FrameScore)
                .where(FrameScore.scan_id == scan.scan_id)
            )
            assert frames == scan.frames_scored


def test_a_batch_is_written_in_a_few_statements(
    any_url: str, tmp_path: Path, pipeline_for: Callable[..., ScoringContext]
) -> None:
    """Scoring many scans costs a handful of statements, not a few per scan."""
    from sqlalchemy import event

    ids = [receive(any_url, write_png(tmp_path / f"{i}.png", i)) for i in range(12)]
    pipeline = pipeline_for(any_url)
    pipeline.load()
    writes: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        # the heartbeat thread's own updates (every 0.5 s here) are not the batch's writes
        if verb in ("INSERT", "UPDATE") and "UPDATE workers" not in statement:
            writes.append(statement)

    engine = db.get_engine(any_url)
    event.listen(engine, "before_cursor_execute", seen)
    try:
        result = process_scans(ids, pipeline)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert list(result.statuses.values()) == ["scored"] * 12
    assert len(writes) <= 8, writes  # claim, header columns, status, scores, frame scores


def test_a_conflict_in_the_batch_write_falls_back_to_one_scan_at_a_time(
    postgres_ledger: Callable[[], str],
    tmp_path: Path,
    pipeline_for: Callable[..., ScoringContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another worker scores a copy of one file between our duplicate check and our write
    (PostgreSQL: SQLite's single writer rules this race out): the batch write fails on the
    unique constraint, and scan by scan the copy is skipped while the others are scored."""
    any_url = postgres_ledger()
    paths = [write_png(tmp_path / f"{i}.png", i) for i in range(3)]
    ids = [receive(any_url, p) for p in paths]
    twin = receive(any_url, paths[1])  # the same content, received twice
    pipeline = pipeline_for(any_url)
    pipeline.load()
    real = ledger.write_scores
    calls: list[int] = []

    def racing(session: object, token: str, entries: list[ledger.ScoreEntry], *a: object) -> bool:
        calls.append(len(entries))
        with db.session_scope(any_url) as other:  # "another worker" scores the twin
            other.execute(
                update(Scan).where(Scan.id == twin).values(status="processing", claim_token="X")
            )
            [scan] = other.scalars(select(Scan).where(Scan.id == twin)).all()
            ledger.write_score(
                other,
                scan,
                "X",
                model_version=pipeline.model_version,
                aggregate="mean",
                summary=entries[0].summary,
                frame_scores=[(0, 50.0)],
            )
        return real(session, token, entries, *a)  # type: ignore[arg-type]

    monkeypatch.setattr("db.ledger.scores.write_scores", racing)  # where the batch write runs
    result = process_scans(ids, pipeline)
    assert calls == [3]
    got = rows(any_url)
    assert [got[i].status for i in ids] == ["scored", "skipped", "scored"]
    assert got[ids[1]].duplicate_of_id == twin
    assert result.statuses == {ids[0]: "scored", ids[1]: "skipped", ids[2]: "scored"}
    with db.session_scope(any_url, readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(ScanScore)) == 3

"""`usqa rescore`: scans of a period scored by model A are queued again for model B and
scored by it, both versions' scores kept. Real files, real decoder child, real SQLite and
PostgreSQL, two random-weights checkpoints as the old and the new model."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

import db
from db import ledger
from db.models import Scan, ScanScore
from tests.helpers.files import make_settings, write_png
from tests.helpers.ledger import receive
from tests.helpers.weights import random_checkpoint
from worker.cli import main
from worker.commands.rescore import parse_bound
from worker.scoring import ScoringContext, process_scans

pytestmark = pytest.mark.integration

IN_RANGE = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
OUT_OF_RANGE = datetime(2025, 2, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def weights_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second random-weights checkpoint: the new model."""
    return random_checkpoint(tmp_path_factory.mktemp("weights_b") / "random_b.pt", seed=1)


@pytest.fixture(scope="module")
def scorer_b(weights_b: Path) -> Any:
    from model import Scorer

    return Scorer.load(weights_b, precision="fp32", threads=1)


@pytest.fixture
def pipelines(
    scorer: Any, scorer_b: Any, random_weights: Path, weights_b: Path
) -> Iterator[Callable[[str, str], ScoringContext]]:
    """Started pipelines on model A (``"a"``) or B (``"b"``), closed afterwards."""
    made: list[ScoringContext] = []

    def build(url: str, which: str) -> ScoringContext:
        weights, loaded = (random_weights, scorer) if which == "a" else (weights_b, scorer_b)
        pipeline = ScoringContext(make_settings(url, weights), scorer=loaded)
        pipeline.start()
        made.append(pipeline)
        return pipeline

    yield build
    for pipeline in made:
        pipeline.close()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("USQA_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("USQA_THREADS", "1")
    monkeypatch.setenv("USQA_HEARTBEAT_SECONDS", "0.5")


def scores(url: str) -> dict[int, dict[str, float]]:
    """scan id -> {model version: score}."""
    out: dict[int, dict[str, float]] = {}
    with db.session_scope(url, readonly=True) as s:
        for row in s.scalars(select(ScanScore)).all():
            out.setdefault(row.scan_id, {})[row.model_version] = row.score
    return out


def scans(url: str) -> dict[int, Scan]:
    with db.session_scope(url, readonly=True) as s:
        return {r.id: r for r in s.scalars(select(Scan)).all()}


def rescore(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(["rescore", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_a_date_range_is_rescored_by_the_new_model_and_both_scores_are_kept(
    any_url: str,
    tmp_path: Path,
    pipelines: Callable[[str, str], ScoringContext],
    weights_b: Path,
    clean_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    drop = tmp_path / "drop"
    ids = {
        name: receive(any_url, write_png(drop / f"{name}.png", seed), when)
        for seed, (name, when) in enumerate(
            [
                ("kept", IN_RANGE),
                ("moved", IN_RANGE),
                ("gone", IN_RANGE),
                ("junk", IN_RANGE),
                ("old", OUT_OF_RANGE),
            ]
        )
    }
    (drop / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)  # fails to decode
    st = (drop / "junk.png").stat()
    with db.session_scope(any_url) as s:  # its ledger row describes the broken file
        s.execute(
            update(Scan)
            .where(Scan.id == ids["junk"])
            .values(size_bytes=st.st_size, mtime_ns=st.st_mtime_ns)
        )
    a = pipelines(any_url, "a")
    first = process_scans(list(ids.values()), a)
    assert first.statuses[ids["junk"]] == "failed"
    assert {first.statuses[ids[n]] for n in ("kept", "moved", "gone", "old")} == {"scored"}
    version_a = a.model_version

    # after scoring: one file moved to done/ by the policy, one deleted by someone
    moved_to = drop / "done" / "moved.png"
    moved_to.parent.mkdir()
    (drop / "moved.png").rename(moved_to)
    with db.session_scope(any_url) as s:
        ledger.mark_disposed(s, ids["moved"], "moved", str(moved_to))
    (drop / "gone.png").unlink()

    common = ["--database-url", any_url, "--weights", str(weights_b)]
    rng = ["--since", "2025-03-01", "--until", "2025-03-31"]
    code, dry = rescore(capsys, *common, *rng, "--dry-run")
    assert code == 1  # the deleted file is reported
    version_b = dry["model_version"]
    assert version_b != version_a and dry["mode"] == "embedded"
    assert dry["queued_ids"] == [ids["kept"], ids["moved"]] and dry["selected"] == 3
    assert {s.status for s in scans(any_url).values()} == {"scored", "failed"}  # unchanged

    code, done = rescore(capsys, *common, *rng)
    assert code == 1
    assert done["queued_ids"] == [ids["kept"], ids["moved"]]
    assert [x["id"] for x in done["not_rescored"]] == [ids["gone"]]
    assert "gone" in done["not_rescored"][0]["reason"]
    rows = scans(any_url)
    for name in ("kept", "moved"):
        row = rows[ids[name]]
        assert row.status == "queued" and row.attempts == 0 and row.reason is None
        assert row.model_version == version_a  # the outcome on record until B scores it
    assert rows[ids["gone"]].status == "scored" and rows[ids["old"]].status == "scored"
    assert rows[ids["junk"]].status == "failed"  # only scored ones unless --status says so

    b = pipelines(any_url, "b")
    second = process_scans(done["queued_ids"], b)
    assert second.statuses == {ids["kept"]: "scored", ids["moved"]: "scored"}
    got = scores(any_url)
    assert set(got[ids["kept"]]) == set(got[ids["moved"]]) == {version_a, version_b}
    assert set(got[ids["old"]]) == set(got[ids["gone"]]) == {version_a}  # untouched
    rows = scans(any_url)
    assert rows[ids["kept"]].model_version == version_b
    assert rows[ids["old"]].model_version == version_a

    # again: nothing left to do for B in that range (the deleted file is still reported)
    code, again = rescore(capsys, *common, *rng)
    assert code == 1 and again["queued_ids"] == [] and again["selected"] == 1
    assert scores(any_url) == got

    # failed ones on request; they fail again, for B, with a reason
    code, failed = rescore(capsys, *common, *rng, "--status", "failed")
    assert code == 0 and failed["queued_ids"] == [ids["junk"]]
    assert process_scans(failed["queued_ids"], b).statuses == {ids["junk"]: "failed"}
    assert scans(any_url)[ids["junk"]].reason

    # by acquisition time (the scanner's clock): only scans that carry one in the range
    with db.session_scope(any_url) as s:
        s.execute(
            update(Scan)
            .where(Scan.id == ids["old"])
            .values(acquisition_datetime=datetime(2025, 3, 5, 9, 30))
        )
    code, acquired = rescore(
        capsys, *common, "--by", "acquired", "--since", "2025-03-05", "--until", "2025-03-05"
    )
    assert code == 0 and acquired["queued_ids"] == [ids["old"]]


def test_a_worker_still_on_the_old_model_scores_nothing_twice(
    sqlite_url: str,
    tmp_path: Path,
    pipelines: Callable[[str, str], ScoringContext],
    weights_b: Path,
    clean_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ids = [receive(sqlite_url, write_png(tmp_path / f"{i}.png", i), IN_RANGE) for i in range(3)]
    a = pipelines(sqlite_url, "a")
    assert set(process_scans(ids, a).statuses.values()) == {"scored"}
    before = scores(sqlite_url)
    code, done = rescore(capsys, "--database-url", sqlite_url, "--weights", str(weights_b))
    assert code == 0 and done["queued_ids"] == ids
    assert done["workers_on_other_versions"] == {a.model_version: 1}
    # the old worker takes them: their A outcome stands, no second A score
    assert process_scans(ids, a).statuses == dict.fromkeys(ids, "scored")
    assert scores(sqlite_url) == before
    assert {r.model_version for r in scans(sqlite_url).values()} == {a.model_version}
    # rescoring again re-queues them for B (they still have no B score); B scores them
    code, again = rescore(capsys, "--database-url", sqlite_url, "--weights", str(weights_b))
    assert again["queued_ids"] == ids
    b = pipelines(sqlite_url, "b")
    assert process_scans(ids, b).statuses == dict.fromkeys(ids, "scored")
    assert all(len(v) == 2 for v in scores(sqlite_url).values())


def test_range_bounds() -> None:
    day_end = parse_bound("2025-03-05", "--until", by="acquired", end=True)
    assert day_end == datetime(2025, 3, 6)
    assert parse_bound("2025-03-05T08:00", "--since", by="acquired", end=False) == datetime(
        2025, 3, 5, 8, 0
    )
    assert parse_bound("2025-03-05T08:00+00:00", "--since", by="received", end=False) == (
        datetime(2025, 3, 5, 8, 0, tzinfo=UTC)
    )
    start = parse_bound("2025-03-05", "--since", by="received", end=False)
    assert start.tzinfo is not None
    assert start == datetime(2025, 3, 5).astimezone(UTC)
    with pytest.raises(Exception, match="--since 'March'"):
        parse_bound("March", "--since", by="received", end=False)
    with pytest.raises(Exception, match="without an offset"):
        parse_bound("2025-03-05T08:00+01:00", "--since", by="acquired", end=False)


def test_bad_options_are_refused(
    sqlite_url: str, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rescore", "--database-url", sqlite_url, "--status", "queued"]) == 2
    assert "--status 'queued'" in capsys.readouterr().err
    args = ["rescore", "--database-url", sqlite_url, "--since", "2025-03-02"]
    assert main([*args, "--until", "2025-03-01"]) == 2
    assert "is not before" in capsys.readouterr().err


@pytest.mark.slow
def test_the_running_usqa_run_scores_the_rescored_scans(
    tmp_path: Path,
    random_weights: Path,
    weights_b: Path,
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Embedded mode end to end: `usqa run --once` with A moves the files to done/; a
    running `usqa run` with B picks up what `usqa rescore` queued, from done/."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("USQA_STABLE_SECONDS", "0.3")
    monkeypatch.setenv("USQA_PRECISION", "fp32")
    for i in range(3):
        write_png(tmp_path / "dropbox" / f"{i}.png", i)
    move = ["--watch", "dropbox", "--after-scoring", "move"]
    assert main(["run", *move, "--once", "--weights", str(random_weights)]) == 0
    done_files = sorted(p.name for p in (tmp_path / "dropbox" / "done").iterdir())
    assert done_files == ["0.png", "1.png", "2.png"]

    env = {k: v for k, v in os.environ.items()}
    env["USQA_WEIGHTS"] = str(weights_b)
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "run", *move],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    db_file = tmp_path / "usqa.db"
    try:
        deadline = time.monotonic() + 120
        version_b = None
        while version_b is None:  # ready when its heartbeat names its model
            assert time.monotonic() < deadline and proc.poll() is None
            with sqlite3.connect(db_file) as conn:
                row = conn.execute(
                    "SELECT model_version FROM workers WHERE stopped_at IS NULL "
                    "AND model_version IS NOT NULL"
                ).fetchone()
            version_b = row[0] if row else None
            time.sleep(0.1)
        code, done = rescore(capsys, "--since", "1h", "--weights", str(weights_b))
        assert code == 0 and len(done["queued_ids"]) == 3
        assert done["model_version"] == version_b and done["workers_on_this_version"] == 1
        while True:
            with sqlite3.connect(db_file) as conn:
                n = conn.execute(
                    "SELECT count(*) FROM scan_scores WHERE model_version = ?", (version_b,)
                ).fetchone()[0]
            if n == 3:
                break
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with sqlite3.connect(db_file) as conn:
        statuses = conn.execute("SELECT status, count(*) FROM scans GROUP BY status").fetchall()
        per_scan = conn.execute(
            "SELECT scan_id, count(*) FROM scan_scores GROUP BY scan_id"
        ).fetchall()
    assert statuses == [("scored", 3)]
    assert sorted(n for _, n in per_scan) == [2, 2, 2]
    # the files stay where the first run put them (no done/done/)
    assert sorted(p.name for p in (tmp_path / "dropbox" / "done").iterdir()) == done_files
    code, again = rescore(capsys, "--since", "1h", "--weights", str(weights_b))
    assert code == 0 and again["queued_ids"] == [] and again["selected"] == 0


def test_scaled_mode_sends_the_ids_to_the_broker_in_batches(
    sqlite_url: str,
    tmp_path: Path,
    pipelines: Callable[[str, str], ScoringContext],
    weights_b: Path,
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import base64

    import redis

    from worker.transport.celery_app import QUEUE, TASK_NAME

    url = os.environ.get("USQA_TEST_RESCORE_REDIS_URL", "redis://127.0.0.1:6379/11")
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        ids = [receive(sqlite_url, write_png(tmp_path / f"{i}.png", i), IN_RANGE) for i in range(5)]
        process_scans(ids, pipelines(sqlite_url, "a"))
        monkeypatch.setenv("USQA_BROKER_URL", url)
        monkeypatch.setenv("USQA_FILES_PER_TASK", "2")
        code, done = rescore(capsys, "--database-url", sqlite_url, "--weights", str(weights_b))
        assert code == 0 and done["mode"] == "scaled" and done["sent_to_broker"] == 5
        sent = []
        for raw in reversed(client.lrange(QUEUE, 0, -1)):  # LPUSH: oldest last
            message = json.loads(raw)
            assert message["headers"]["task"] == TASK_NAME
            assert message["content-type"] == "application/json"
            sent.append(json.loads(base64.b64decode(message["body"]))[0][0])
        assert sent == [ids[0:2], ids[2:4], ids[4:5]]
        # what the Celery task then runs, on the new model
        b = pipelines(sqlite_url, "b")
        for batch in sent:
            assert set(process_scans(batch, b).statuses.values()) == {"scored"}
        assert all(len(v) == 2 for v in scores(sqlite_url).values())
    finally:
        client.flushdb()
        client.close()

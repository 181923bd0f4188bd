"""`usqa run` as a hospital would use it: a real process, a real folder, SQLite."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.files import copy_dicom, env_for, usqa, write_png
from worker.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REQUIRED = {"path", "sha256", "status", "score", "grade", "reason", "attempts", "model_version"}


def test_run_once_scores_the_folder_and_the_ledger_answers(
    tmp_path: Path,
    random_weights: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in env_for(tmp_path, random_weights).items():
        if key.startswith("USQA_"):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("USQA_DATABASE_URL", raising=False)
    monkeypatch.delenv("USQA_BROKER_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # the default database is ./usqa.db
    drop = tmp_path / "dropbox"
    write_png(drop / "a.png", 1)
    write_png(drop / "ward2" / "b.png", 2)
    copy_dicom("examples_ybr_color.dcm", drop / "cine.dcm")
    (drop / "notes.txt").write_text("not a scan")
    assert main(["run", "--watch", "dropbox", "--once"]) == 1  # notes.txt failed
    capsys.readouterr()
    assert main(["scans", "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 4 and all(set(x) >= REQUIRED for x in lines)
    by_name = {Path(x["path"]).name: x for x in lines}
    assert by_name["notes.txt"]["status"] == "failed" and by_name["notes.txt"]["reason"]
    assert {by_name[n]["status"] for n in ("a.png", "b.png", "cine.dcm")} == {"scored"}
    with sqlite3.connect(tmp_path / "usqa.db") as conn:  # the default database, plain SQL
        plain = conn.execute(
            "SELECT s.path, ss.score, ss.grade FROM scans s JOIN scan_scores ss "
            "ON ss.scan_id = s.id ORDER BY s.path"
        ).fetchall()
    assert sorted(Path(p).name for p, _, _ in plain) == ["a.png", "b.png", "cine.dcm"]
    assert all(
        0 <= score <= 100 and grade in ("good", "average", "poor") for _, score, grade in plain
    )
    assert main(["scans", "--status", "failed"]) == 0
    table = capsys.readouterr().out
    assert "notes.txt" in table and "a.png" not in table
    assert main(["run", "--watch", "dropbox", "--once"]) == 0  # nothing new: nothing recorded
    assert main(["scans", "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(x) for x in text)
    return found


def test_sigterm_finishes_the_work_in_hand_and_exits_cleanly(
    tmp_path: Path, random_weights: Path
) -> None:
    env = env_for(tmp_path, random_weights)
    env["USQA_LOG_FORMAT"] = "json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "run", "--watch", "dropbox"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        db_file = tmp_path / "usqa.db"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # ready when its heartbeat is in the ledger
            if db_file.exists():
                with sqlite3.connect(db_file) as conn:
                    try:
                        if conn.execute("SELECT count(*) FROM workers").fetchone()[0]:
                            break
                    except sqlite3.OperationalError:
                        pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.1)
        for i in range(6):
            write_png(tmp_path / "dropbox" / f"{i}.png", i)
        while time.monotonic() < deadline:
            with sqlite3.connect(db_file) as conn:
                if conn.execute("SELECT count(*) FROM scans").fetchone()[0] == 6:
                    break
            time.sleep(0.05)
        helpers = children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        stderr = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with sqlite3.connect(db_file) as conn:
        statuses = [r[0] for r in conn.execute("SELECT status FROM scans")]
        stopped = conn.execute("SELECT stopped_at FROM workers").fetchone()[0]
    assert stopped is not None
    # nothing half-done: each scan is scored, or still queued for the next start
    assert set(statuses) <= {"scored", "queued"} and "processing" not in statuses
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    outcomes = [r for r in records if r.get("status") == "scored"]
    assert len(outcomes) == statuses.count("scored")
    assert all("scan_id" in r and "score" in r for r in outcomes)
    time.sleep(0.5)
    for pid in helpers:  # the decoder child went with it
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    resumed = usqa(["run", "--watch", "dropbox", "--once"], tmp_path, env)
    assert resumed.returncode == 0, resumed.stderr
    with sqlite3.connect(db_file) as conn:
        assert {r[0] for r in conn.execute("SELECT status FROM scans")} == {"scored"}

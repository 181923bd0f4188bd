"""``usqa evaluate --reviews`` and ``usqa calibrate --reviews`` on seeded ledgers: the
figures of a hand-worked example through the database (SQLite and PostgreSQL), the period
filter, usage errors, no torch on this path, and the env file that calibrate updates."""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.ledger import Row, seed
from tests.helpers.ratings import graded, rate
from worker.cli import main
from worker.commands.calibrate import env_values, update_env_file

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = REPO / "deploy" / "usqa.env.example"
DAY = date(2026, 3, 1)


@pytest.fixture(autouse=True)
def _site_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default thresholds (80/45), whatever the environment of the test run says."""
    monkeypatch.delenv("USQA_GOOD_THRESHOLD", raising=False)
    monkeypatch.delenv("USQA_AVERAGE_THRESHOLD", raising=False)


def seed_hand_example(url: str) -> list[int]:
    """The six scans and ten ratings of tests/db/test_agreement.py's hand-worked example,
    written through the ledger (the model grades by 80/45, as seeded)."""
    ids = seed(
        url,
        [
            Row(day=DAY, score=90, station="US-1"),
            Row(day=DAY, score=85, station="US-1"),
            Row(day=DAY, score=60, station="US-1", defects=(("noise", 0.8, 1.0),)),
            Row(day=DAY, score=50, station="US-2", defects=(("blur", 0.8, 1.0),)),
            Row(day=DAY, score=30, station="US-2", defects=(("low_gain", 0.8, 1.0),)),
            Row(day=DAY, score=20, station=None, defects=(("no_signal", 0.9, 1.0),)),
        ],
    )
    s1, s2, s3, s4, s5, s6 = ids
    rated_at = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    rate(
        url,
        "A",
        {s1: "good", s2: "average", s3: "average", s4: "poor", s5: "poor", s6: "average"},
        defects={s2: ["noise"], s3: ["noise"], s4: ["blur"], s5: ["low_gain"]},
        now=rated_at,
    )
    rate(
        url,
        "B",
        {s1: None, s3: "good", s4: "average", s5: "poor"},  # None: accepts the model's result
        defects={s4: ["blur", "noise"]},
        now=datetime(2026, 3, 5, 10, 0, tzinfo=UTC),
    )
    return ids


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_evaluate_reviews_gives_the_hand_worked_figures(
    any_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_hand_example(any_url)
    args = ["evaluate", "--reviews", "--database-url", any_url, "--bootstrap", "0"]
    code, out, _ = run_cli([*args, "--json"], capsys)
    assert code == 0
    report = json.loads(out)
    assert (report["ratings"], report["scans"], report["reviewers"]) == (10, 6, ["A", "B"])
    overall, *rest = [g for g in report["groups"] if g["model_version"] == "v1"]
    assert overall["dimension"] == "overall" and overall["accepted"] == 1
    assert overall["agreement"]["value"] == pytest.approx(0.6)
    assert overall["kappa"]["value"] == pytest.approx(11 / 21)
    assert overall["spearman"]["value"] == pytest.approx(56 / math.sqrt(80.5 * 73.5))
    assert overall["confusion"] == [[2, 1, 0], [1, 2, 1], [0, 1, 2]]
    defects = {d["defect"]: d for d in overall["defects"]}
    assert [(name, d["tp"], d["fp"], d["fn"]) for name, d in defects.items()] == [
        ("low_gain", 1, 1, 0),
        ("noise", 1, 1, 2),
        ("no_signal", 0, 1, 0),
        ("blur", 2, 0, 0),
    ]  # in the order of the defect vocabulary (model.defects.DEFECTS)
    assert defects["no_signal"]["recall"] == {
        "value": None, "n": 0, "low": None, "high": None, "reason": "no reviewer saw no_signal"
    }  # fmt: skip
    groups = {(g["dimension"], g["group"]): g for g in rest}
    assert groups[("reviewer", "A")]["kappa"]["value"] == pytest.approx(0.4)
    assert groups[("reviewer", "B")]["kappa"]["value"] == pytest.approx(5 / 7)
    assert groups[("station", None)]["ratings"] == 1  # --by defaults to station
    pairs = report["between_reviewers"][0]
    assert (pairs["pairs"], pairs["scans"]) == (4, 4)
    assert pairs["kappa"]["value"] == pytest.approx(7 / 15)

    code, out, _ = run_cli([*args, "--by", "reviewer"], capsys)
    assert code == 0
    assert "Agreement with reviewers: 10 ratings of 6 scans by 2 reviewers." in out
    assert "Model v1: 10 ratings of 6 scans, 1 of them accepted as shown." in out
    lines: dict[str, list[str]] = {}
    for line in out.splitlines():  # the first table's rows (the pairs' table repeats names)
        lines.setdefault(line.split("  ")[0], line.split())
    assert lines["All ratings"][2:] == ["10", "6", "1", "60%", "0.52", "0.73"]
    assert lines["Reviewer B"][2:] == ["4", "4", "1", "75%", "0.71", "0.95"]
    assert "Station" not in out  # --by reviewer: no station rows
    assert "noise" in out and "no_signal: recall undefined, no reviewer saw no_signal." in out


def test_evaluate_reviews_period_bootstrap_and_no_ratings(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_hand_example(sqlite_url)  # A rated on 2026-03-02, B on 2026-03-05
    base = ["evaluate", "--reviews", "--database-url", sqlite_url, "--json"]
    code, out, _ = run_cli([*base, "--until", "2026-03-02", "--bootstrap", "0"], capsys)
    assert code == 0 and json.loads(out)["reviewers"] == ["A"]
    code, out, _ = run_cli([*base, "--since", "2026-03-05", "--bootstrap", "0"], capsys)
    assert code == 0 and json.loads(out)["reviewers"] == ["B"]
    code, first, _ = run_cli([*base, "--bootstrap", "300"], capsys)
    code2, again, _ = run_cli([*base, "--bootstrap", "300"], capsys)
    assert code == code2 == 0 and first == again  # seeded: the same intervals each run
    kappa = json.loads(first)["groups"][0]["kappa"]
    assert kappa["low"] <= kappa["value"] <= kappa["high"]
    code, out, err = run_cli([*base, "--until", "2026-03-01"], capsys)
    assert (code, out) == (1, "")
    assert "no ratings in the ledger (rated up to 2026-03-01)" in err
    code, _, err = run_cli([*base, "--model-version", "v9"], capsys)
    assert code == 1 and "no ratings in the ledger (model v9)" in err


def test_evaluate_usage_errors(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["evaluate"], capsys)
    assert code == 2 and "give --data DIR and --splits CSV" in err and "--reviews" in err
    code, _, err = run_cli(["evaluate", "--reviews", "--data", str(tmp_path)], capsys)
    assert code == 2 and "leave out --data and --splits" in err
    code, _, err = run_cli(["evaluate", "--by", "station", "--data", str(tmp_path)], capsys)
    assert code == 2 and "--by only go with --reviews" in err
    code, _, err = run_cli(["evaluate", "--reviews", "--since", "March"], capsys)
    assert code == 2 and "expected YYYY-MM-DD" in err
    args = ["evaluate", "--reviews", "--database-url", sqlite_url]
    code, _, err = run_cli([*args, "--since", "2026-03-05", "--until", "2026-03-01"], capsys)
    assert code == 2 and "is before --since" in err


def test_evaluate_reviews_loads_no_model(sqlite_url: str) -> None:
    seed_hand_example(sqlite_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("USQA_")}
    probe = (
        "import sys\n"
        "from worker.cli import main\n"
        f"code = main(['evaluate', '--reviews', '--database-url', {sqlite_url!r}, "
        "'--bootstrap', '10', '--json'])\n"
        "print('torch' in sys.modules, code, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.stderr.strip().splitlines()[-1] == "False 0", done.stderr
    assert json.loads(done.stdout)["ratings"] == 10


def seed_calibration(url: str, n: int = 150, seed_value: int = 2) -> list[float]:
    """``n`` scans with scores over 0-100, each rated by one reviewer grading by 72/41; a
    third of them rated again by a second reviewer grading the same way."""
    rng = np.random.default_rng(seed_value)
    scores = [round(float(rng.uniform(0, 100)), 1) for _ in range(n)]
    ids = seed(
        url, [Row(day=DAY, score=s, station=f"US-{i % 3 + 1}") for i, s in enumerate(scores)]
    )
    rate(url, "ann", {i: graded(s, 72, 41) for i, s in zip(ids, scores, strict=True)})
    rate(url, "bob", {i: graded(s, 72, 41) for i, s in zip(ids[::3], scores[::3], strict=True)})
    return scores


def env_copy(tmp_path: Path) -> Path:
    path = tmp_path / "usqa.env"
    shutil.copyfile(ENV_EXAMPLE, path)
    path.chmod(0o600)
    return path


def test_calibrate_proposes_then_writes_the_env_file(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_calibration(sqlite_url)
    env = env_copy(tmp_path)
    base = ["calibrate", "--reviews", "--database-url", sqlite_url]
    code, out, _ = run_cli([*base, "--json"], capsys)
    assert code == 0
    result = json.loads(out)["calibration"]
    assert result["verdict"] == "improves" and result["usable"] is True
    good, average = result["proposed"]["good"], result["proposed"]["average"]
    assert 69 < good < 75 and 38 < average < 44  # the reviewers' 72/41, within a score gap
    assert result["held_out_after"]["kappa"] > result["held_out_before"]["kappa"]
    assert env.read_bytes() == ENV_EXAMPLE.read_bytes()  # nothing written without --write

    code, out, _ = run_cli([*base, "--write", str(env)], capsys)
    assert code == 0
    assert f"Proposed            {good:>16g}  {average:>10g}" in out
    assert "On the " in out and "held-out ratings the proposal agrees better" in out
    assert f"Updated {env}: USQA_GOOD_THRESHOLD 80 -> {good:g}" in out
    assert "Restart the usqa services" in out
    before, after = ENV_EXAMPLE.read_text().splitlines(), env.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert changed == [
        ("USQA_GOOD_THRESHOLD=80", f"USQA_GOOD_THRESHOLD={good:g}"),
        ("USQA_AVERAGE_THRESHOLD=45", f"USQA_AVERAGE_THRESHOLD={average:g}"),
    ]
    assert stat.S_IMODE(env.stat().st_mode) == 0o600  # it holds passwords: mode kept
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".usqa.env")] == []

    assert "does not hold the thresholds" not in out  # the file had 80/45, as here
    # again with the default 80/45: the file now holds other values, which is said
    code, out, _ = run_cli([*base, "--write", str(env)], capsys)
    assert code == 0 and "already holds these thresholds: nothing changed" in out
    assert f"USQA_GOOD_THRESHOLD={good:g} there, 80 here" in out
    assert env_values(env, ("USQA_GOOD_THRESHOLD", "USQA_AVERAGE_THRESHOLD")) == {
        "USQA_GOOD_THRESHOLD": f"{good:g}",
        "USQA_AVERAGE_THRESHOLD": f"{average:g}",
    }


def test_calibrate_refuses(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = env_copy(tmp_path)
    base = ["calibrate", "--reviews", "--database-url", sqlite_url]
    code, _, err = run_cli([*base, "--write", str(env)], capsys)
    assert code == 1 and "no ratings in the ledger" in err
    seed_calibration(sqlite_url, n=20)
    code, out, _ = run_cli([*base, "--write", str(env)], capsys)
    assert code == 1
    assert "Too few ratings of model v1 to calibrate" in out and "Not written to" in out
    assert env.read_bytes() == ENV_EXAMPLE.read_bytes()
    code, _, err = run_cli([*base, "--write", str(tmp_path / "missing.env")], capsys)
    assert code == 2 and "no such file" in err
    code, _, err = run_cli(["calibrate", "--database-url", sqlite_url], capsys)
    assert code == 2 and "--reviews" in err
    code, _, err = run_cli([*base, "--held-out", "100"], capsys)
    assert code == 2 and "below 100" in err


def test_update_env_file_keeps_every_other_line(tmp_path: Path) -> None:
    real = tmp_path / "real.env"
    real.write_bytes(
        b"# site settings\r\n"
        b"export USQA_GOOD_THRESHOLD=80\r\n"
        b"# USQA_AVERAGE_THRESHOLD=45 (commented out: stays)\r\n"
        b"USQA_LOG_LEVEL=INFO\r\n"
    )
    real.chmod(0o640)
    link = tmp_path / "usqa.env"
    link.symlink_to(real)
    changes = update_env_file(link, {"USQA_GOOD_THRESHOLD": "72", "USQA_AVERAGE_THRESHOLD": "41.5"})
    assert [(c.name, c.old, c.new, c.line) for c in changes] == [
        ("USQA_GOOD_THRESHOLD", "80", "72", 2),
        ("USQA_AVERAGE_THRESHOLD", None, "41.5", 5),
    ]
    assert link.is_symlink()  # the file it points to was updated, the link kept
    assert real.read_bytes() == (
        b"# site settings\r\n"
        b"export USQA_GOOD_THRESHOLD=72\r\n"
        b"# USQA_AVERAGE_THRESHOLD=45 (commented out: stays)\r\n"
        b"USQA_LOG_LEVEL=INFO\r\n"
        b"USQA_AVERAGE_THRESHOLD=41.5\r\n"
    )
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    again = update_env_file(link, {"USQA_GOOD_THRESHOLD": "72", "USQA_AVERAGE_THRESHOLD": "41.5"})
    assert again == []

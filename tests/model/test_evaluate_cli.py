"""``usqa evaluate`` end to end on a few BUSI images (random weights: shape of the report)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.evaluation import LADDERS
from worker.cli import main

pytestmark = pytest.mark.integration  # reads the BUSI data


def test_evaluate_json_plot_ladders(
    busi_dir: Path, random_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "scatter.png"
    code = main(
        [
            "evaluate",
            "--data",
            str(busi_dir),
            "--splits",
            str(busi_dir / "splits.csv"),
            "--weights",
            str(random_checkpoint),
            "--split",
            "test",
            "--protocol",
            "graded",
            "--limit",
            "3",
            "--bootstrap",
            "20",
            "--precision-check",
            "--json",
            "--plot",
            str(plot),
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 3 and report["versions"] == 3 * 7
    assert set(report["metrics"]) == {"overall", "original", "jpeg", "blur"}
    overall = report["metrics"]["overall"]
    for key in (
        "mse",
        "rmse",
        "mae",
        "plcc",
        "plcc_logistic",
        "srocc",
        "krocc",
        "grade_accuracy",
        "confusion",
        "ci",
    ):
        assert key in overall
    assert sum(map(sum, overall["confusion"])) == 21
    assert set(report["ladders"]) == {*LADDERS, "mean_kendall_tau"}
    assert -1 <= report["ladders"]["mean_kendall_tau"] <= 1
    assert report["precision_check"]["n"] == 21
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"


def test_evaluate_table_paper(
    busi_dir: Path, random_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "evaluate",
            "--data",
            str(busi_dir),
            "--splits",
            str(busi_dir / "splits.csv"),
            "--weights",
            str(random_checkpoint),
            "--protocol",
            "paper",
            "--limit",
            "2",
            "--bootstrap",
            "0",
            "--no-ladders",
            "--split",
            "val",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "protocol paper" in out and "2 images, 6 versions" in out and "overall" in out

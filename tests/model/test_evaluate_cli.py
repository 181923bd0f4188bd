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


def test_evaluate_defects_report(
    busi_dir: Path, shadowing_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every figure of the defects protocol is there, with its interval and count, and the
    real-files table scores pydicom's ultrasound examples with a preview each."""
    from model.defects import DEFECTS
    from model.evaluation import DEFECT_LADDERS

    previews = tmp_path / "previews"
    code = main(
        [
            "evaluate",
            "--data",
            str(busi_dir),
            "--splits",
            str(busi_dir / "splits.csv"),
            "--weights",
            str(shadowing_weights),
            "--limit",
            "2",
            "--levels",
            "2",
            "--bootstrap",
            "20",
            "--non-ultrasound",
            "2",
            "--real",
            "--previews",
            str(previews),
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["protocol"]["name"] == "defects"
    assert report["versions"] == 2 * (3 + 2 * len(DEFECTS))
    assert set(report["metrics"]) == {
        "overall",
        "original",
        "clean_curved",
        "clean_sector",
        *DEFECTS,
    }
    assert set(report["ladders"]) == {*DEFECT_LADDERS, "mean_kendall_tau"}
    for name in DEFECTS:
        ladder = report["ladders"][name]
        assert {"mean_kendall_tau", "strictly_decreasing", "strongest_graded_poor"} <= set(ladder)
    ident = report["identification"]
    # the fixed-answer model names shadowing everywhere: top-1 right only for shadowing
    assert ident["top1_upper_half"]["shadowing"]["share"] == 1.0
    assert ident["top1_upper_half"]["noise"]["share"] == 0.0
    assert ident["precision_recall"]["shadowing"]["recall"] == 1.0
    assert report["false_alarms"]["clean"]["no_defect"]["share"] == 0.0
    assert report["false_alarms"]["clean"]["first_defects"] == {"shadowing": 2}
    assert report["gate"]["busi_versions_skipped"] == 0
    assert report["gate"]["heldout"]["overall"]["n"] == 8
    real = {r["file"]: r for r in report["real_files"]}
    assert set(real) == {
        "examples_ybr_color.dcm",
        "examples_palette.dcm",
        "examples_rgb_color.dcm",
        "examples_jpeg2k.dcm",
    }
    for row in real.values():
        assert row["status"] == "scored" and row["defects"][0]["name"] == "shadowing"
        assert Path(row["preview"]).read_bytes()[:4] == b"\x89PNG"

"""``usqa score``: PNG, single- and multi-frame DICOM, skipped and failed files, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from model.checkpoint import save_checkpoint
from model.degradations import blur
from model.network import build_model
from model.preprocess import Preprocess
from model.protocols import get_protocol
from worker.cli import main

KEYS = {
    "path",
    "status",
    "score",
    "grade",
    "frames_scored",
    "frame_scores",
    "model_version",
    "reason",
    "defects",
    "first_defect",
}


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random (seeded) weights: these tests check the pipeline, not score values."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "random.pt"
    meta = {
        "target_scale": 100.0,
        "preprocess": Preprocess().to_dict(),
        "protocol": get_protocol("graded").to_dict(),
        "data_hash": "-",
        "command": "-",
        "config": {},
        "metrics": {},
    }
    save_checkpoint(path, build_model("none"), meta)
    return path


def _score(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict]]:
    code = main(["score", "--json", *args])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    return code, lines


def _dicom(path: Path, modality: str, frames: int = 1) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = modality
    rng = np.random.default_rng(0)
    shape = (frames, 120, 160) if frames > 1 else (120, 160)
    ds.set_pixel_data(rng.integers(0, 256, shape, dtype=np.uint8), "MONOCHROME2", 8)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_png_and_dicom_examples(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "scan.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (200, 300), np.uint8)).save(png)
    single = str(get_testdata_file("examples_rgb_color.dcm"))
    multi = str(get_testdata_file("examples_ybr_color.dcm"))  # 30 frames, JPEG baseline
    code, rows = _score(capsys, "--weights", str(weights), "--frames", "4", str(png), single, multi)
    assert code == 0
    assert [r["status"] for r in rows] == ["scored"] * 3, rows
    for row in rows:
        assert set(row) >= KEYS
        assert 0 <= row["score"] <= 100 and row["grade"] in {"good", "average", "poor"}
        assert len(row["frame_scores"]) == row["frames_scored"]
        assert row["model_version"] == rows[0]["model_version"] and row["reason"] is None
    assert [r["frames_scored"] for r in rows] == [1, 1, 4]
    assert rows[2]["score"] == pytest.approx(np.mean(rows[2]["frame_scores"]), abs=0.02)


def test_skipped_failed_and_next_file_processed(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ct = _dicom(tmp_path / "ct.dcm", "CT")
    us = _dicom(tmp_path / "cine.dcm", "US", frames=3)
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"this is not an image")
    missing = tmp_path / "missing.png"
    code, rows = _score(
        capsys, "--weights", str(weights), "--frames", "0", str(ct), str(bad), str(missing), str(us)
    )
    assert code == 1
    status = {Path(r["path"]).name: r for r in rows}
    assert status["ct.dcm"]["status"] == "skipped" and status["ct.dcm"]["reason"]
    assert (
        status["broken.dcm"]["status"] == "failed"
        and "broken.dcm" in status["broken.dcm"]["reason"]
    )
    assert status["missing.png"]["status"] == "failed"
    assert status["cine.dcm"]["status"] == "scored" and status["cine.dcm"]["frames_scored"] == 3


def test_table_output_and_model_errors(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "a.png"
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(png)
    assert main(["score", "--weights", str(weights), str(png)]) == 0
    out = capsys.readouterr().out
    assert "status" in out and "scored" in out and "a.png" in out and "1 files, 0 failed" in out
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"nope")
    assert main(["score", "--weights", str(junk), str(png)]) == 2
    assert "junk.pt" in capsys.readouterr().err


def test_the_json_names_defects_most_probable_first(
    shadowing_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "scan.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (200, 300), np.uint8)).save(png)
    multi = str(get_testdata_file("examples_ybr_color.dcm"))
    code, rows = _score(
        capsys, "--weights", str(shadowing_weights), "--frames", "3", str(png), multi
    )
    assert code == 0
    for row in rows:
        assert set(row) >= KEYS and row["status"] == "scored"
        assert row["first_defect"] == "shadowing"
        assert [d["name"] for d in row["defects"]] == ["shadowing", "blur"]
        assert row["defects"][0] == {"name": "shadowing", "probability": 0.953, "frames": 1.0}
        assert set(row["defects"][1]) == {"name", "probability", "frames"}
    assert "does not name defects" not in capsys.readouterr().err


def test_a_score_only_checkpoint_says_once_that_it_names_no_defects(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pngs = []
    for i in range(2):
        pngs.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((64, 64), 90 + i, np.uint8)).save(pngs[-1])
    code = main(["score", "--json", "--weights", str(weights), *map(str, pngs)])
    captured = capsys.readouterr()
    rows = [json.loads(x) for x in captured.out.splitlines() if x.strip()]
    assert code == 0 and [r["defects"] for r in rows] == [[], []]
    assert all(r["first_defect"] is None for r in rows)
    assert captured.err.count("does not name defects") == 1


def test_not_ultrasound_is_skipped_with_the_reason(
    not_ultrasound_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "worksheet.png"
    Image.fromarray(np.full((300, 200), 250, np.uint8)).save(png)
    code, rows = _score(capsys, "--weights", str(not_ultrasound_weights), str(png))
    assert code == 0
    assert rows[0]["status"] == "skipped" and rows[0]["score"] is None
    assert "not an ultrasound image" in rows[0]["reason"]


@pytest.mark.integration
def test_shipped_model_grades_busi(
    busi_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shipped weights: a clean BUSI test image is good, a heavily blurred copy poor."""
    import csv

    with (busi_dir / "splits.csv").open(newline="") as fh:
        rel = next(r["path"] for r in csv.DictReader(fh) if r["split"] == "test")
    clean = np.asarray(Image.open(busi_dir / rel).convert("L"))
    blurred = tmp_path / "blurred.png"
    Image.fromarray(blur(clean, 4.0)).save(blurred)
    code, rows = _score(capsys, str(busi_dir / rel), str(blurred))
    assert code == 0
    assert rows[0]["grade"] == "good" and rows[1]["grade"] == "poor"
    assert rows[0]["score"] > rows[1]["score"] + 30

"""``usqa export-reviews``: rated scans of a real ledger become PNGs and a labels.csv that
``usqa train --protocol reviewed`` fine-tunes a checkpoint on."""

from __future__ import annotations

import csv
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy.orm import Session

import db
from db import ledger, reviews
from db.models import User
from dicom_io import ReadOptions, read
from model.defects import DEFECTS
from model.preprocess import to_grey
from tests.helpers import dicom
from tests.helpers.ledger import Row, seed
from worker.cli import main

RATED_AT = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weights checkpoint with every output on 64 x 64 images (fast to train)."""
    import torch

    from model.checkpoint import save_checkpoint
    from model.network import OUTPUTS, build_model
    from model.preprocess import Preprocess

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    meta = {"target_scale": 100.0, "preprocess": Preprocess(size=64).to_dict()}
    save_checkpoint(path, build_model("none", OUTPUTS), {**meta, "outputs": list(OUTPUTS)})
    return path


def _dicom(path: Path, frames: int, seed_: int) -> Path:
    """A grey US file (a cine when ``frames`` > 1) with an ultrasound region smaller than
    the frame, so the B-mode crop shows; patient name and id in the header."""
    if frames > 1:
        arr = np.stack([dicom.smooth_image(96, 128, False, seed_ + i) for i in range(frames)])
    else:
        arr = dicom.smooth_image(96, 128, False, seed_)
    ds = dicom.build(arr, "MONOCHROME2")
    dicom.with_regions(ds, [dicom.region(16, 8, 111, 87, 1, 1)])
    return dicom.save(ds, path)


def _png(path: Path, seed_: int) -> Path:
    Image.fromarray(dicom.smooth_image(80, 80, False, seed_)).save(path)
    return path


def _users(session: Session, *names: str) -> dict[str, User]:
    return {n: reviews.add_user(session, n, "reviewer", None) for n in names}


def _rate(
    session: Session, user: User, scan_id: int, grade: str, defects: tuple[str, ...] = ()
) -> None:
    reviews.save_rating(
        session,
        scan_id=scan_id,
        reviewer=user,
        agrees=False,
        grade=grade,
        defects=defects,
        vocabulary=DEFECTS,
        now=RATED_AT,
    )


@pytest.fixture
def rated(sqlite_url: str, tmp_path: Path) -> dict[str, object]:
    """A ledger of rated scans whose files are real: a single frame and a cine (named
    after the patient), a PNG, one moved to done/, one deleted after scoring, one
    rewritten since, one unrated; and the grades and defects given."""
    drop = tmp_path / "drop"
    (drop / "done").mkdir(parents=True)
    files = {
        "single": _dicom(drop / "Doe_Jane_single.dcm", 1, 1),
        "cine": _dicom(drop / "Doe_Jane_cine.dcm", 6, 10),
        "png": _png(drop / "Doe_Jane.png", 20),
        "moved": _dicom(drop / "moved.dcm", 1, 30),
        "deleted": _dicom(drop / "deleted.dcm", 1, 40),
        "rewritten": _dicom(drop / "rewritten.dcm", 1, 50),
        "unrated": _dicom(drop / "unrated.dcm", 1, 60),
    }
    day = date(2025, 3, 9)
    ids = dict(
        zip(
            files,
            seed(sqlite_url, [Row(day, score=70.0, path=str(p)) for p in files.values()]),
            strict=True,
        )
    )
    shutil.move(files["moved"], drop / "done" / "moved.dcm")
    files["deleted"].unlink()
    _dicom(files["rewritten"], 1, 99)
    with db.session_scope(sqlite_url) as s:
        ledger.mark_disposed(s, ids["moved"], "moved", str(drop / "done" / "moved.dcm"))
        ledger.mark_disposed(s, ids["deleted"], "deleted", None)
        u = _users(s, "alice", "bob", "carol")
        _rate(s, u["alice"], ids["single"], "good")
        _rate(s, u["bob"], ids["single"], "average", ("noise",))
        _rate(s, u["alice"], ids["cine"], "poor", ("noise", "blur"))
        _rate(s, u["bob"], ids["cine"], "poor", ("noise",))
        _rate(s, u["carol"], ids["cine"], "average", ("noise", "shadowing"))
        _rate(s, u["alice"], ids["png"], "good")
        _rate(s, u["carol"], ids["moved"], "average", ("low_gain",))
        _rate(s, u["alice"], ids["deleted"], "poor")
        _rate(s, u["alice"], ids["rewritten"], "good")
    return {"url": sqlite_url, "ids": ids, "files": files, "drop": drop}


def _export(url: str, out: Path, *extra: str) -> int:
    return main(["export-reviews", "--out", str(out), "--database-url", url, *extra])


def _labels(out: Path) -> list[dict[str, str]]:
    with (out / "labels.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_export_writes_consensus_labels_and_the_cropped_frames(
    rated: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids: dict[str, int] = rated["ids"]  # type: ignore[assignment]
    files: dict[str, Path] = rated["files"]  # type: ignore[assignment]
    out = tmp_path / "set"
    assert _export(str(rated["url"]), out, "--val-share", "0.5", "--seed", "3") == 0
    printed = capsys.readouterr().out
    assert f"scan {ids['deleted']}: the file was deleted after scoring" in printed
    assert f"scan {ids['rewritten']}: the file changed since it was scored" in printed
    assert "exported 7 frames of 4 scans" in printed  # 1 + 4 (the cine) + 1 + 1

    rows = _labels(out)
    by_scan: dict[int, list[dict[str, str]]] = {}
    for row in rows:
        by_scan.setdefault(int(row["scan_id"]), []).append(row)
    assert set(by_scan) == {ids["single"], ids["cine"], ids["png"], ids["moved"]}
    first = {sid: r[0] for sid, r in by_scan.items()}
    # median grade, ties to the lower; defects seen by more than half of the reviewers
    assert (first[ids["single"]]["grade"], first[ids["single"]]["defects"]) == ("average", "")
    assert (first[ids["cine"]]["grade"], first[ids["cine"]]["defects"]) == ("poor", "noise")
    assert first[ids["cine"]]["reviewers"] == "3"
    assert (first[ids["png"]]["grade"], first[ids["moved"]]["defects"]) == ("good", "low_gain")
    # the cine: 4 of its 6 frames, as scoring picks 4; one split per scan, both splits used
    scan = read(files["cine"], ReadOptions(frames_to_score=4))
    assert [int(r["frame"]) for r in by_scan[ids["cine"]]] == scan.selected_frames
    assert len(scan.selected_frames) == 4
    assert all(len({r["split"] for r in rs}) == 1 for rs in by_scan.values())
    assert {r["split"] for r in rows} == {"train", "val"}

    # each PNG is the frame scoring sees (B-mode crop), 8-bit grey, named by scan and frame
    expected = dict(scan.iter_frames())
    for row in by_scan[ids["cine"]]:
        assert row["path"] == f"images/scan{ids['cine']:07d}-f{int(row['frame']):04d}.png"
        frame = to_grey(expected[int(row["frame"])])
        assert frame.shape[0] < 96 and frame.shape[1] < 128  # the region, not the screen
        with Image.open(out / row["path"]) as im:
            assert im.mode == "L"
            np.testing.assert_array_equal(np.asarray(im), frame)
    with Image.open(out / first[ids["png"]]["path"]) as im:
        assert im.mode == "L"

    # nothing named or written from the patient, the station or the original file names
    readme = (out / "README.txt").read_text()
    assert "CLINICAL DATA" in readme and "burned-in" in readme
    texts = [readme, (out / "labels.csv").read_text(), *(p.name for p in out.rglob("*"))]
    for secret in ("Doe", "Jane", dicom.PATIENT_ID, "ROOM3", ".dcm", "drop"):
        assert not any(secret in t for t in texts), secret
    assert sorted(p.name for p in out.iterdir()) == ["README.txt", "images", "labels.csv"]
    assert (out.stat().st_mode & 0o077) == 0


def test_filters_and_refusals(
    rated: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = str(rated["url"])
    ids: dict[str, int] = rated["ids"]  # type: ignore[assignment]
    out = tmp_path / "two"
    assert _export(url, out, "--min-reviewers", "2") == 0
    assert {int(r["scan_id"]) for r in _labels(out)} == {ids["single"], ids["cine"]}
    assert f"scan {ids['png']}: rated by 1, fewer than 2" in capsys.readouterr().out

    assert _export(url, out) == 2  # not empty: an earlier export would mix in
    assert "not an empty folder" in capsys.readouterr().err
    assert _export(url, tmp_path / "later", "--since", "2025-03-11") == 1
    assert not (tmp_path / "later").exists()
    assert _export(url, tmp_path / "other", "--model-version", "v9") == 1
    assert _export(url, tmp_path / "bad", "--val-share", "1") == 2


def test_nothing_readable_exits_1_and_leaves_no_folder(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = _dicom(tmp_path / "gone.dcm", 1, 5)
    [scan_id] = seed(sqlite_url, [Row(date(2025, 3, 9), score=30.0, path=str(gone))])
    gone.unlink()
    with db.session_scope(sqlite_url) as s:
        _rate(s, _users(s, "alice")["alice"], scan_id, "poor")
    out = tmp_path / "set"
    assert _export(sqlite_url, out) == 1
    captured = capsys.readouterr()
    assert f"scan {scan_id}: file no longer available" in captured.out
    assert "no rated scan could be exported" in captured.err
    assert not out.exists()


def test_export_then_fine_tune_then_score(
    rated: dict[str, object], tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """The exported set fine-tunes a checkpoint with a defect head and a gate; the result
    loads and scores an exported frame."""
    from model.checkpoint import load_checkpoint
    from model.network import OUTPUTS
    from model.scorer import Scorer

    out = tmp_path / "set"
    assert _export(str(rated["url"]), out, "--val-share", "0.5", "--seed", "3") == 0
    tuned = tmp_path / "tuned.pt"
    args = ["train", "--protocol", "reviewed", "--data", str(out), "--splits"]
    args += [str(out / "labels.csv"), "--init", str(tiny_checkpoint), "--out", str(tuned)]
    args += ["--epochs", "1", "--batch-size", "4", "--crop", "48", "--no-progress"]
    assert main(args) == 0
    ckpt = load_checkpoint(tuned)
    assert ckpt.outputs == OUTPUTS and ckpt.preprocess.size == 64
    assert ckpt.meta["protocol"]["name"] == "reviewed"
    splits = {r["scan_id"]: r["split"] for r in _labels(out)}
    assert ckpt.meta["protocol"]["scans"] == {
        s: sum(1 for v in splits.values() if v == s) for s in ("train", "val")
    }
    frame = np.asarray(Image.open(out / _labels(out)[0]["path"]))
    result = Scorer.load(tuned, precision="fp32", threads=1).assess([frame])
    assert result.scores.shape == (1,) and 0.0 <= float(result.scores[0]) <= 100.0
    assert result.defects is not None and result.defects.shape == (1, len(DEFECTS))


def test_reviewed_scans_on_sqlite_and_postgresql(any_url: str) -> None:
    """The query behind the export: ratings per scan by reviewer, the period, the model
    version, and where each file is now."""
    from db.reviews.export import reviewed_scans

    day = date(2025, 3, 9)
    rows = [Row(day, score=70.0, version="v1"), Row(day, score=40.0, version="v2")]
    a, b = seed(any_url, rows)
    with db.session_scope(any_url) as s:
        ledger.mark_disposed(s, a, "moved", "/drop/done/scan0.dcm")
        ledger.mark_disposed(s, b, "deleted", None)
        u = _users(s, "bob", "alice")
        _rate(s, u["bob"], a, "poor", ("noise",))
        _rate(s, u["alice"], a, "average")
        reviews.save_rating(
            s, scan_id=b, reviewer=u["alice"], agrees=False, grade="good",
            now=datetime(2025, 4, 1, tzinfo=UTC),
        )  # fmt: skip
    with db.session_scope(any_url, readonly=True) as s:
        every = reviewed_scans(s)
        v2 = reviewed_scans(s, model_version="v2")
        march = reviewed_scans(s, until=datetime(2025, 3, 31, tzinfo=UTC))
        april = reviewed_scans(s, since=datetime(2025, 3, 31, tzinfo=UTC))
    assert [x.scan_id for x in every] == [a, b]
    first = every[0]
    assert [(r.reviewer, r.grade, r.defects) for r in first.ratings] == [
        ("alice", "average", frozenset()),
        ("bob", "poor", frozenset({"noise"})),
    ]
    assert (first.location, first.disposition) == ("/drop/done/scan0.dcm", "moved")
    assert (every[1].location, every[1].disposition) == (None, "deleted")
    assert len(first.sha256) == 64 and first.size_bytes == 1000
    assert [x.scan_id for x in v2] == [b]
    assert [x.scan_id for x in march] == [a] and [x.scan_id for x in april] == [b]

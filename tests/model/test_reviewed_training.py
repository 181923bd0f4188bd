"""The ``reviewed`` protocol: reviewers' consensus labels, their targets, the train/val draw,
and ``usqa train --protocol reviewed`` fine-tuning a checkpoint on an exported folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model.checkpoint import load_checkpoint, save_checkpoint
from model.defects import DEFECTS
from model.network import OUTPUTS, SCORE_ONLY, build_model
from model.preprocess import Preprocess
from model.reviewed import (
    ReviewedLabel,
    ReviewedProtocol,
    consensus,
    grade_targets,
    read_labels,
    split_scans,
    write_labels,
)
from model.training import TrainConfig, train
from worker.cli import main
from worker.errors import ConfigError


@pytest.mark.parametrize(
    ("grades", "expected"),
    [
        (["good"], "good"),
        (["good", "average"], "average"),  # an even split takes the lower
        (["poor", "good"], "poor"),
        (["good", "poor", "average"], "average"),
        (["good", "good", "poor", "average"], "average"),
        (["good", "good", "good", "poor"], "good"),
        (["poor", "poor", "good"], "poor"),
    ],
)
def test_consensus_grade_is_the_median_ties_to_the_lower(grades: list[str], expected: str) -> None:
    assert consensus(grades, [()] * len(grades))[0] == expected


def test_consensus_defects_are_those_most_reviewers_saw() -> None:
    two = consensus(["poor", "poor"], [{"noise", "blur"}, {"noise"}])
    assert two == ("poor", ("noise",))  # blur: 1 of 2 is not a majority
    three = consensus(["poor"] * 3, [{"shadowing", "noise"}, {"noise", "shadowing"}, {"low_gain"}])
    assert three[1] == ("noise", "shadowing")  # the vocabulary's order
    with pytest.raises(ValueError, match="one grade and one defect list"):
        consensus(["good"], [])


def test_grade_targets_are_the_middles_of_the_bands() -> None:
    assert grade_targets() == {"good": 90.0, "average": 62.5, "poor": 22.5}
    assert grade_targets(good=70.0, average=40.0) == {"good": 85.0, "average": 55.0, "poor": 20.0}
    with pytest.raises(ConfigError):
        grade_targets(good=40.0, average=70.0)


def test_split_is_per_scan_fixed_by_the_seed_and_stable_as_the_set_grows() -> None:
    ids = list(range(1, 201))
    first = split_scans(ids, 0.2, seed=7)
    assert first == split_scans(list(reversed(ids)), 0.2, seed=7)
    assert 20 <= sum(v == "val" for v in first.values()) <= 60
    grown = split_scans([*ids, *range(201, 301)], 0.2, seed=7)
    assert all(grown[i] == first[i] for i in ids)  # no scan changes side
    assert split_scans(ids, 0.2, seed=8) != first
    assert set(split_scans([5, 6], 0.01, seed=0).values()) == {"train", "val"}
    assert set(split_scans([5, 6], 0.99, seed=0).values()) == {"train", "val"}
    assert split_scans([5], 0.2, seed=0) == {5: "train"}
    assert set(split_scans(ids, 0.0, seed=0).values()) == {"train"}


def test_labels_round_trip_and_bad_files_are_refused(tmp_path: Path) -> None:
    labels = [
        ReviewedLabel("images/a.png", "train", 3, 0, "poor", 2, ("noise", "blur")),
        ReviewedLabel("images/b.png", "val", 4, 7, "good", 1),
    ]
    write_labels(tmp_path / "labels.csv", labels)
    assert read_labels(tmp_path / "labels.csv") == labels
    bad = tmp_path / "bad.csv"
    bad.write_text("path,split,scan_id,frame,grade,reviewers,defects\na.png,train,1,0,ok,1,\n")
    with pytest.raises(ConfigError, match=r"line 2: grade 'ok'"):
        read_labels(bad)
    bad.write_text("path,split\na.png,train\n")
    with pytest.raises(ConfigError, match="missing columns"):
        read_labels(bad)


def test_protocol_targets(tmp_path: Path) -> None:
    labels = [
        ReviewedLabel("images/a.png", "train", 3, 0, "poor", 2, ("noise",)),
        ReviewedLabel("images/b.png", "val", 4, 0, "average", 1),
    ]
    write_labels(tmp_path / "labels.csv", labels)
    protocol = ReviewedProtocol.load(tmp_path / "labels.csv")
    image = np.zeros((8, 8), np.uint8)
    version = protocol.source_version(image, 0)
    assert version.label == 22.5 and version.kind == "reviewed"
    assert version.targets == tuple(1.0 if d == "noise" else 0.0 for d in DEFECTS)
    assert protocol.to_dict()["scans"] == {"train": 1, "val": 1}
    with pytest.raises(ConfigError, match="do not match"):
        protocol.check_paths("train", ["images/b.png"])


def _checkpoint(path: Path, outputs: tuple[str, ...], score: float) -> Path:
    """Random (seeded) weights on 64 x 64 images whose score is ``score`` x 100 for every
    image, with BatchNorm statistics measured on noise images (as a trained model has)."""
    torch.manual_seed(0)
    net = build_model("none", outputs)
    head = net.fc
    assert isinstance(head, torch.nn.Linear)
    with torch.no_grad():
        head.weight[0].zero_()
        head.bias[0] = score
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None  # a plain average over the batches below
        net.train()
        rng = np.random.default_rng(0)
        for _ in range(2):
            net(Preprocess(size=64).tensor(rng.integers(0, 256, (8, 64, 64), dtype=np.uint8)))
    meta = {"target_scale": 100.0, "preprocess": Preprocess(size=64).to_dict()}
    save_checkpoint(path, net, {**meta, "outputs": list(outputs)})
    return path


def _exported(folder: Path) -> Path:
    """A folder as export-reviews writes it: 6 poor frames of 3 scans (noise), 2 of 1 scan
    in val."""
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = []
    for scan in range(1, 5):
        for frame in range(2):
            name = f"images/scan{scan:07d}-f{frame:04d}.png"
            Image.fromarray(rng.integers(0, 256, (72, 80), dtype=np.uint8)).save(folder / name)
            split = "val" if scan == 4 else "train"
            labels.append(ReviewedLabel(name, split, scan, frame, "poor", 2, ("noise",)))
    write_labels(folder / "labels.csv", labels)
    return folder / "labels.csv"


def _config(folder: Path, init: Path, out: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        data=folder,
        splits=folder / "labels.csv",
        out=out,
        protocol="reviewed",
        init=str(init),
        epochs=1,
        batch_size=4,
        size=64,
        crop=48,
        target="unit",
        lr=1e-3,
        augment="flip",
        nonus_share=0.0,
        seed=1,
        threads=1,
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_score_only_fine_tune_moves_the_score_toward_the_reviewers(tmp_path: Path) -> None:
    """A score-only checkpoint that says ~80 of every image, fine-tuned on frames the
    reviewers called poor, scores them lower; the result loads with the same preset."""
    _exported(tmp_path / "set")
    init = _checkpoint(tmp_path / "init.pt", SCORE_ONLY, 0.8)
    out = tmp_path / "tuned.pt"
    meta = train(_config(tmp_path / "set", init, out, epochs=2, bn_recal=2), progress=False)
    assert meta["outputs"] == ["score"] and meta["protocol"]["name"] == "reviewed"
    assert meta["protocol"]["score_targets"]["poor"] == 22.5
    assert len(meta["metrics"]["history"]) == 2
    # the epoch kept is closer to the reviewers' poor (22.5) than the start (80) was
    assert meta["metrics"]["selected"]["val_mse"] < (80.0 - 22.5) ** 2 / 2

    def mean_score(path: Path) -> float:
        ckpt = load_checkpoint(path)
        frames = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "set").rglob("*.png"))]
        x = ckpt.preprocess.batch(frames)
        with torch.no_grad():
            return float(ckpt.net(x)[:, 0].mean()) * ckpt.target_scale

    assert mean_score(out) < mean_score(init) - 5.0


def test_cli_fine_tunes_every_output_and_takes_the_preset_from_the_checkpoint(
    tmp_path: Path,
) -> None:
    labels = _exported(tmp_path / "set")
    init = _checkpoint(tmp_path / "init.pt", OUTPUTS, 0.6)
    out = tmp_path / "tuned.pt"
    args = ["train", "--protocol", "reviewed", "--data", str(tmp_path / "set"), "--splits"]
    args += [str(labels), "--init", str(init), "--out", str(out), "--epochs", "1"]
    args += ["--batch-size", "4", "--crop", "48", "--nonus-share", "0.2", "--no-progress"]
    assert main(args) == 0  # no --size or --target: the checkpoint's (64, unit)
    ckpt = load_checkpoint(out)
    assert ckpt.outputs == OUTPUTS and ckpt.preprocess.size == 64 and ckpt.target_scale == 100
    selected = ckpt.meta["metrics"]["selected"]
    assert "val_gate_error" in selected  # the defects loss: score, defects and gate
    assert ckpt.meta["config"]["init"] == str(init)


def test_refusals(tmp_path: Path) -> None:
    _exported(tmp_path / "set")
    init = _checkpoint(tmp_path / "init.pt", SCORE_ONLY, 0.6)
    out = tmp_path / "x.pt"
    with pytest.raises(ConfigError, match="fine-tunes a usqa checkpoint"):
        train(_config(tmp_path / "set", Path("none"), out), progress=False)
    with pytest.raises(ConfigError, match="fine-tune it with --size 64"):
        train(_config(tmp_path / "set", init, out, size=128), progress=False)
    with pytest.raises(ConfigError, match="fine-tune it with --target unit"):
        train(_config(tmp_path / "set", init, out, target="raw"), progress=False)
    assert not out.exists()

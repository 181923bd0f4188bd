"""Tiny-data training end to end: seeded, resumable, writes a loadable checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.checkpoint import load_checkpoint
from model.training import TrainConfig, train
from worker.cli import main
from worker.errors import ConfigError

pytestmark = pytest.mark.integration  # reads the BUSI data


def _config(busi_dir: Path, out: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        data=busi_dir,
        splits=busi_dir / "splits.csv",
        out=out,
        limit=4,
        epochs=1,
        batch_size=4,
        size=64,
        crop=48,
        val_levels=1,
        target="unit",
        seed=3,
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_cli_tiny_training_writes_a_loadable_checkpoint(busi_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny.pt"
    code = main(
        [
            "train",
            "--data",
            str(busi_dir),
            "--splits",
            str(busi_dir / "splits.csv"),
            "--out",
            str(out),
            "--limit",
            "4",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--size",
            "64",
            "--crop",
            "48",
            "--val-levels",
            "1",
            "--bf16",
            "--no-progress",
            "--protocol",
            "paper",
            "--bn-recal",
            "1",
        ]
    )
    assert code == 0
    ckpt = load_checkpoint(out)
    meta = ckpt.meta
    assert meta["protocol"]["name"] == "paper"
    assert meta["preprocess"]["size"] == 64 and ckpt.preprocess.size == 64
    assert len(meta["data_hash"]) == 64
    assert meta["command"].startswith("usqa ") or meta["command"] == ""
    assert meta["config"]["bf16"] is True and meta["config"]["epochs"] == 1
    assert meta["config"]["bn_recal"] == 1
    assert meta["metrics"]["history"][0]["epoch"] == 1
    assert "val_mse" in meta["metrics"]["selected"]
    assert out.with_name(out.name + ".state").is_file()


def test_seeded_and_resumable(busi_dir: Path, tmp_path: Path) -> None:
    """An interrupted-and-resumed run ends with the same weights as an uninterrupted one."""
    train(_config(busi_dir, tmp_path / "a.pt", epochs=2), progress=False)
    train(_config(busi_dir, tmp_path / "b.pt", epochs=2, stop_after=1), progress=False)
    assert len(load_checkpoint(tmp_path / "b.pt").meta["metrics"]["history"]) == 1
    meta = train(_config(busi_dir, tmp_path / "b.pt", epochs=2, resume=True), progress=False)
    assert [h["epoch"] for h in meta["metrics"]["history"]] == [1, 2]
    wa = load_checkpoint(tmp_path / "a.pt").net.state_dict()
    wb = load_checkpoint(tmp_path / "b.pt").net.state_dict()
    for key in ("conv1.weight", "fc.weight", "layer4.1.bn2.running_mean"):
        np.testing.assert_allclose(wa[key].numpy(), wb[key].numpy(), rtol=1e-5, atol=1e-6)


def test_resume_refuses_other_options(busi_dir: Path, tmp_path: Path) -> None:
    train(_config(busi_dir, tmp_path / "c.pt", epochs=2, stop_after=1), progress=False)
    with pytest.raises(ConfigError, match="different options"):
        train(_config(busi_dir, tmp_path / "c.pt", epochs=2, lr=0.5, resume=True), progress=False)


def test_the_defects_protocol_trains_every_output(busi_dir: Path, tmp_path: Path) -> None:
    """One epoch on four images: the checkpoint names every output, loads in the Scorer and
    answers with a score, ten defect probabilities and a not-ultrasound probability."""
    from model.defects import DEFECTS
    from model.network import OUTPUTS
    from model.scorer import Scorer

    out = tmp_path / "defects.pt"
    meta = train(_config(busi_dir, out, protocol="defects", nonus_share=0.2, bn_recal=1), False)
    assert meta["outputs"] == list(OUTPUTS) and meta["protocol"]["name"] == "defects"
    record = meta["metrics"]["history"][0]
    assert np.isfinite(record["val_loss"]) and 0.0 <= record["val_gate_error"] <= 1.0
    ckpt = load_checkpoint(out)
    assert ckpt.defect_names == DEFECTS and ckpt.has_gate
    result = Scorer.load(out, precision="fp32").assess([np.full((64, 64), 90, np.uint8)])
    assert result.defects is not None and result.defects.shape == (1, len(DEFECTS))
    assert result.not_ultrasound is not None

"""Checkpoint loading: safe, checked, clear errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from model.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from model.network import build_model
from model.scorer import Scorer
from worker.errors import ModelError


class Payload:
    """An arbitrary object: loading it would need full unpickling."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this must never run",))


def test_round_trip(tmp_path: Path, random_checkpoint: Path, meta: dict) -> None:
    ckpt = load_checkpoint(random_checkpoint)
    assert ckpt.meta["format"] == FORMAT and ckpt.target_scale == 100.0
    assert len(ckpt.sha256) == 64 and not ckpt.net.training
    half = tmp_path / "half.pt"
    save_checkpoint(half, ckpt.net, meta, half=True)
    assert half.stat().st_size < random_checkpoint.stat().st_size * 0.6
    back = load_checkpoint(half)
    w0, w1 = ckpt.net.conv1.weight, back.net.conv1.weight
    assert w1.dtype == torch.float32 and torch.allclose(w0, w1, atol=1e-3)


def test_build_model_head() -> None:
    net = build_model("none")
    assert isinstance(net.fc, nn.Linear) and net.fc.out_features == 1
    with pytest.raises(ModelError, match="not found"):
        build_model("/nonexistent/resnet18.pth")


def test_wrong_shape_is_a_clear_model_error(tmp_path: Path, meta: dict) -> None:
    net = build_model("none")
    net.fc = nn.Linear(512, 3)
    path = tmp_path / "wrong.pt"
    save_checkpoint(path, net, meta)
    with pytest.raises(ModelError, match=r"do not fit a ResNet-18.*fc\.weight"):
        load_checkpoint(path)
    with pytest.raises(ModelError, match="do not fit"):
        Scorer.load(path)


def test_pickle_payload_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], meta: dict
) -> None:
    net = build_model("none")
    payload = {
        "format": FORMAT,
        "arch": "resnet18",
        "state_dict": net.state_dict(),
        "extra": Payload(),
        **meta,
    }
    path = tmp_path / "evil.pt"
    torch.save(payload, path)
    with pytest.raises(ModelError, match="refused to load"):
        load_checkpoint(path)
    assert "must never run" not in capsys.readouterr().out
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ModelError):
        load_checkpoint(raw)


def test_other_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError, match="not a readable model checkpoint"):
        load_checkpoint(junk)
    plain = tmp_path / "plain.pt"
    torch.save(build_model("none").state_dict(), plain)
    with pytest.raises(ModelError, match="not a usqa checkpoint"):
        load_checkpoint(plain)

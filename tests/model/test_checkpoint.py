"""Checkpoint loading: safe, checked, clear errors."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import cast

import numpy as np
import pytest
import torch
from torch import nn

from model.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from model.defects import DEFECTS
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
    w0, w1 = (cast(nn.Conv2d, n.conv1).weight for n in (ckpt.net, back.net))
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


def test_a_checkpoint_with_every_output_round_trips(tmp_path: Path, meta: dict) -> None:
    from model.network import OUTPUTS

    torch.manual_seed(1)
    path = tmp_path / "heads.pt"
    save_checkpoint(path, build_model("none", OUTPUTS), {**meta, "outputs": list(OUTPUTS)})
    ckpt = load_checkpoint(path)
    assert ckpt.outputs == OUTPUTS and ckpt.has_gate
    assert ckpt.defect_names == DEFECTS
    scorer = Scorer.load(path, precision="fp32")
    result = scorer.assess([np.zeros((64, 64), np.uint8), np.full((80, 40), 200, np.uint8)])
    assert result.scores.shape == (2,) and result.defect_names == DEFECTS
    assert result.defects is not None and result.defects.shape == (2, len(DEFECTS))
    assert result.not_ultrasound is not None and result.not_ultrasound.shape == (2,)
    assert ((result.defects > 0) & (result.defects < 1)).all()


def test_a_score_only_checkpoint_has_no_defects(random_checkpoint: Path) -> None:
    ckpt = load_checkpoint(random_checkpoint)
    assert ckpt.outputs == ("score",) and ckpt.defect_names == () and not ckpt.has_gate
    result = Scorer.load(random_checkpoint, precision="fp32").assess([np.zeros((64, 64), np.uint8)])
    assert result.defects is None and result.not_ultrasound is None


def test_format_1_files_still_load(tmp_path: Path, random_checkpoint: Path) -> None:
    obj = torch.load(random_checkpoint, weights_only=True)
    obj["format"] = "usqa-regressor/1"
    obj.pop("outputs")
    old = tmp_path / "old.pt"
    torch.save(obj, old)
    assert load_checkpoint(old).outputs == ("score",)


def test_unknown_outputs_are_refused(tmp_path: Path, meta: dict) -> None:
    path = tmp_path / "future.pt"
    save_checkpoint(
        path, build_model("none", ("score", "glare")), {**meta, "outputs": ["score", "glare"]}
    )
    with pytest.raises(ModelError, match="glare"):
        load_checkpoint(path)


def test_init_from_a_checkpoint_keeps_its_backbone_and_score(random_checkpoint: Path) -> None:
    from model.network import OUTPUTS

    source = load_checkpoint(random_checkpoint).net.state_dict()
    net = build_model(random_checkpoint, OUTPUTS)
    state = net.state_dict()
    assert torch.equal(state["layer4.1.conv2.weight"], source["layer4.1.conv2.weight"])
    assert torch.equal(state["fc.weight"][0], source["fc.weight"][0])
    assert torch.equal(state["fc.bias"][:1], source["fc.bias"])
    assert (state["fc.bias"][1:] < -2).all()  # new outputs start unlikely

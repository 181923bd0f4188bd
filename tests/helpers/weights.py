"""Small usqa checkpoints made in the tests: random (seeded) weights, or a head whose answers
do not depend on the image."""

from __future__ import annotations

from pathlib import Path
from typing import cast


def random_checkpoint(path: Path, seed: int = 0) -> Path:
    """A usqa checkpoint with random weights drawn from ``seed``, for pipeline tests that do
    not care about score values."""
    import torch

    from model import Preprocess, build_model, save_checkpoint

    torch.manual_seed(seed)
    save_checkpoint(
        path,
        build_model(init="none"),
        {"target_scale": 100.0, "preprocess": Preprocess().to_dict()},
    )
    return path


def head_checkpoint(
    path: Path, defects: dict[str, float] | None = None, gate: float = -8.0, score: float = 0.6
) -> Path:
    """A checkpoint with every output whose answers do not depend on the image: the score
    ``score`` x 100, each defect's logit from ``defects`` (others -8: probability 0.0003) and
    the not-ultrasound logit ``gate``. For pipeline tests of the defect and gate paths."""
    import torch

    from model import Preprocess, build_model, save_checkpoint
    from model.network import OUTPUTS

    torch.manual_seed(0)
    net = build_model(init="none", outputs=OUTPUTS)
    fc = cast(torch.nn.Linear, net.fc)
    with torch.no_grad():
        fc.weight.zero_()
        fc.bias.fill_(-8.0)
        fc.bias[0] = score
        for name, logit in (defects or {}).items():
            fc.bias[OUTPUTS.index(name)] = logit
        fc.bias[OUTPUTS.index("not_ultrasound")] = gate
    meta = {"target_scale": 100.0, "preprocess": Preprocess().to_dict(), "outputs": list(OUTPUTS)}
    save_checkpoint(path, net, meta)
    return path

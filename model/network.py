"""The network: torchvision's ResNet-18 with one linear head for every output.

The head ``fc`` is ``Linear(512, len(outputs))``: column 0 is the quality score (regressed),
then one logit per defect name, then the not-ultrasound logit (see :data:`OUTPUTS`). One
matrix product gives them all, so the defect and gate outputs cost nothing next to the
backbone. A model with only the score (``outputs=("score",)``, the earlier checkpoints) is
the same network with a one-output head.

Initialisation is ``none`` (random, seeded by the caller), ``imagenet`` (torchvision's own
weights API: needs internet access or torchvision's cache), the path of a local ``.pth``
file holding a ResNet-18 state dict (offline sites; the 1000-class head is dropped), or the
path of a usqa checkpoint (its backbone and its score head; new outputs start at a low
probability).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from model.defects import DEFECTS
from worker.errors import ModelError

__all__ = [
    "ARCH",
    "GATE",
    "OUTPUTS",
    "SCORE_ONLY",
    "Fp32Conv2d",
    "Fp32Linear",
    "build_model",
    "fold_batchnorm",
]

log = logging.getLogger(__name__)

ARCH = "resnet18"
GATE = "not_ultrasound"
OUTPUTS: tuple[str, ...] = ("score", *DEFECTS, GATE)
SCORE_ONLY: tuple[str, ...] = ("score",)
_PRIOR_LOGIT = -2.2  # new defect and gate outputs start near probability 0.1


class Fp32Conv2d(nn.Conv2d):
    """A Conv2d that always runs in float32, also inside a bf16 autocast region.

    Used for the stem: bf16 keeps 8 significant bits, so casting the normalised input to
    bf16 would round away the 1-2 grey-level differences that mild blur and high-quality
    JPEG leave. Same parameters and state-dict keys as the plain Conv2d it replaces.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return super().forward(x.float())


class Fp32Linear(nn.Linear):
    """A Linear layer that always runs in float32: the regression output itself is not
    rounded to bf16 (8 significant bits would be up to 0.4 score points near 100)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return super().forward(x.float())


def _fp32_stem(net: nn.Module) -> None:
    old = net.conv1
    assert isinstance(old, nn.Conv2d)
    stem = Fp32Conv2d(
        old.in_channels,
        old.out_channels,
        old.kernel_size,  # type: ignore[arg-type]
        old.stride,  # type: ignore[arg-type]
        old.padding,  # type: ignore[arg-type]
        bias=False,
    )
    stem.weight = old.weight
    net.conv1 = stem


def build_model(init: str | Path = "none", outputs: tuple[str, ...] = SCORE_ONLY) -> nn.Module:
    """ResNet-18 with ``fc`` replaced by ``Linear(512, len(outputs))``; the stem convolution
    and the head always run in float32 (also under bf16 autocast).

    ``init``: ``"none"``, ``"imagenet"``, a path to a local ResNet-18 state dict or to a usqa
    checkpoint. Raises :class:`ModelError` when the initial weights cannot be obtained or
    do not fit.
    """
    from torchvision.models import ResNet18_Weights, resnet18

    if not outputs or outputs[0] != "score":
        raise ModelError(f"outputs {outputs!r}: the first output must be the score")
    init_text = str(init)
    head_state: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    if init_text == "none":
        net = resnet18(weights=None)
    elif init_text == "imagenet":
        try:
            net = resnet18(weights=ResNet18_Weights.IMAGENET1K_V1)
        except Exception as exc:  # no network and no cache: urllib/OSError/RuntimeError
            raise ModelError(
                "ImageNet weights for ResNet-18 could not be downloaded or found in "
                f"torchvision's cache ({exc.__class__.__name__}: {exc}); use --init none, or "
                "--init FILE with a resnet18 .pth file copied from an online machine"
            ) from exc
    else:
        net = resnet18(weights=None)
        path = Path(init_text)
        state, source_outputs = _load_backbone_state(path)
        head_state = _matching_head(state, source_outputs, outputs)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise ModelError(
                f"{path}: not a ResNet-18 state dict (missing {len(missing)} keys, e.g. "
                f"{missing[:2]}; unexpected {len(unexpected)}, e.g. {unexpected[:2]}); "
                "expected torchvision's resnet18 weights"
            )
        log.info("initialised the backbone from %s", path)
    net.fc = Fp32Linear(net.fc.in_features, len(outputs))
    with torch.no_grad():
        net.fc.bias[1:].fill_(_PRIOR_LOGIT)
        for index, (weight, bias) in head_state.items():
            net.fc.weight[int(index)] = weight
            net.fc.bias[int(index)] = bias
    _fp32_stem(net)
    return net


def _matching_head(
    state: dict[str, torch.Tensor], source: tuple[str, ...] | None, outputs: tuple[str, ...]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Rows of a usqa checkpoint's head for the outputs both models share (by name)."""
    if source is None or "fc.weight" not in state:
        return {}
    weight, bias = state["fc.weight"].float(), state["fc.bias"].float()
    return {
        str(outputs.index(name)): (weight[i], bias[i])
        for i, name in enumerate(source)
        if name in outputs
    }


def _load_backbone_state(path: Path) -> tuple[dict[str, torch.Tensor], tuple[str, ...] | None]:
    """A plain tensor state dict from ``path`` (weights_only loading, never arbitrary
    pickle), and the outputs of its head when it is a usqa checkpoint (else None)."""
    if not path.is_file():
        raise ModelError(f"{path}: initial weights file not found; expected a resnet18 .pth file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(
            f"{path}: cannot be loaded safely as tensors ({exc.__class__.__name__}); "
            "expected a resnet18 state dict saved with torch.save(model.state_dict())"
        ) from exc
    outputs: tuple[str, ...] | None = None
    if isinstance(obj, dict) and str(obj.get("format", "")).startswith("usqa-regressor/"):
        outputs = tuple(obj.get("outputs") or SCORE_ONLY)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path}: expected a dict of tensors (a state dict), got {type(obj)}")
    return {k: v.float() if v.is_floating_point() else v for k, v in obj.items()}, outputs


def _fold_pair(parent: nn.Module, conv_name: str, bn_name: str) -> int:
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    conv, bn = getattr(parent, conv_name, None), getattr(parent, bn_name, None)
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
        return 0
    setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))  # keeps the class (Fp32Conv2d)
    setattr(parent, bn_name, nn.Identity())
    return 1


def fold_batchnorm(net: nn.Module) -> int:
    """Fold each BatchNorm of a ResNet into the convolution before it, for inference only:
    the network is put in eval mode (the running statistics become part of the conv's
    weight and bias) and must not be trained afterwards. Returns how many were folded."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    net.eval()
    folded = _fold_pair(net, "conv1", "bn1")
    for module in net.modules():
        if isinstance(module, (BasicBlock, Bottleneck)):
            for index in (1, 2, 3):
                folded += _fold_pair(module, f"conv{index}", f"bn{index}")
            if isinstance(module.downsample, nn.Sequential):
                folded += _fold_pair(module.downsample, "0", "1")
    return folded

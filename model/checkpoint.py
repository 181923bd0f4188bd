"""Checkpoint files: the weights plus everything needed to use and audit them.

A checkpoint is a plain dict (loadable with ``torch.load(weights_only=True)``, never
arbitrary pickle)::

    format        "usqa-regressor/2" (files with "usqa-regressor/1", score only, still load)
    arch          "resnet18"
    outputs       the head's columns: "score", then defect names, then "not_ultrasound"
                  (absent in format 1: the score only)
    state_dict    tensors (float32, or float16 for the shipped file; loaded as float32)
    target_scale  model output x target_scale = score in label units (0..100)
    preprocess    Preprocess.to_dict()
    protocol      Protocol.to_dict()
    data_hash     sha256 of the training/validation images and their split assignment
    command       the command line that produced it
    config        the training options
    metrics       validation metrics of the selected epoch, and training history
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dicom_io.messages import first_line
from model.defects import DEFECTS
from model.network import ARCH, GATE, SCORE_ONLY, build_model
from model.preprocess import Preprocess
from worker.errors import ModelError

__all__ = [
    "FORMAT",
    "Checkpoint",
    "export",
    "file_sha256",
    "load_checkpoint",
    "save_checkpoint",
]

log = logging.getLogger(__name__)

FORMAT = "usqa-regressor/2"
READABLE_FORMATS = ("usqa-regressor/1", FORMAT)


@dataclass
class Checkpoint:
    """A loaded checkpoint: the network (eval mode, float32) and its metadata."""

    net: nn.Module
    meta: dict[str, Any]
    preprocess: Preprocess
    target_scale: float
    sha256: str
    outputs: tuple[str, ...] = SCORE_ONLY

    @property
    def defect_names(self) -> tuple[str, ...]:
        """The defects this model judges (empty: a score-only model)."""
        return tuple(o for o in self.outputs if o in DEFECTS)

    @property
    def has_gate(self) -> bool:
        return GATE in self.outputs


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(
    path: Path,
    net: nn.Module | dict[str, torch.Tensor],
    meta: dict[str, Any],
    half: bool = False,
) -> None:
    """Write ``net``'s weights and ``meta`` (JSON-like values only) atomically to ``path``.
    ``half`` stores the weights as float16 (half the size; loaded back as float32).
    ``meta["outputs"]`` names the head's columns (default: the score only)."""
    state = net.state_dict() if isinstance(net, nn.Module) else net
    outputs = list(meta.get("outputs") or SCORE_ONLY)
    tensors = {
        k: (v.detach().to("cpu").half() if half and v.is_floating_point() else v.detach().cpu())
        for k, v in state.items()
    }
    payload = {
        "format": FORMAT,
        "arch": ARCH,
        **meta,
        "outputs": outputs,
        "state_dict": tensors,
        "weights_dtype": "float16" if half else "float32",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, device: str = "cpu") -> Checkpoint:
    """Load and check a checkpoint. Any problem raises :class:`ModelError` saying what to do."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(
            f"{path}: model weights file not found; set USQA_WEIGHTS to a usqa checkpoint "
            "or unset it to use the shipped model"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc):
            raise ModelError(
                f"{path}: not a readable model checkpoint (the file is not a torch "
                "checkpoint or is damaged); expected a file written by `usqa train`"
            ) from exc
        raise ModelError(
            f"{path}: refused to load: the file contains Python objects other than tensors "
            "and plain values, so it could run code when opened; use a checkpoint written by "
            "`usqa train`"
        ) from exc
    except Exception as exc:  # truncated zip, not a torch file at all, ...
        raise ModelError(
            f"{path}: not a readable model checkpoint ({first_line(exc)}); expected a file "
            "written by `usqa train`"
        ) from exc
    if not isinstance(obj, dict) or obj.get("format") not in READABLE_FORMATS:
        found = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise ModelError(
            f"{path}: not a usqa checkpoint (format {found!r}, expected one of "
            f"{READABLE_FORMATS}); use a file written by `usqa train`"
        )
    if obj.get("arch") != ARCH:
        raise ModelError(f"{path}: architecture {obj.get('arch')!r}, expected {ARCH!r}")
    state = obj.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path}: the checkpoint has no tensor state_dict")
    try:
        preprocess = Preprocess.from_dict(obj["preprocess"])
        target_scale = float(obj["target_scale"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path}: checkpoint metadata is incomplete ({exc!r})") from exc
    outputs = _outputs(path, obj)
    net = build_model("none", outputs)
    state32 = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    try:
        net.load_state_dict(state32, strict=True)
    except RuntimeError as exc:
        first = next((ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()), str(exc))
        raise ModelError(
            f"{path}: the weights do not fit a ResNet-18 with a {len(outputs)}-output head "
            f"({first}); "
            "use a checkpoint written by `usqa train`"
        ) from exc
    net.to(device).eval()
    meta = {k: v for k, v in obj.items() if k != "state_dict"}
    return Checkpoint(net, meta, preprocess, target_scale, file_sha256(path), outputs)


def _outputs(path: Path, obj: dict[str, Any]) -> tuple[str, ...]:
    """The head's columns named in a checkpoint, checked against the vocabulary."""
    raw = obj.get("outputs") or list(SCORE_ONLY)
    if not isinstance(raw, list | tuple) or not all(isinstance(o, str) for o in raw):
        raise ModelError(f"{path}: 'outputs' must be a list of names, got {raw!r}")
    outputs = tuple(raw)
    known = {"score", GATE, *DEFECTS}
    unknown = [o for o in outputs if o not in known]
    if not outputs or outputs[0] != "score" or unknown or len(set(outputs)) != len(outputs):
        raise ModelError(
            f"{path}: outputs {list(outputs)}: expected 'score' first, then distinct defect "
            f"names of this usqa version and optionally {GATE!r} (unknown: {unknown}); "
            "upgrade usqa or use a checkpoint written by this version"
        )
    return outputs


def export(src: Path, dst: Path, half: bool = True) -> None:
    """Re-write checkpoint ``src`` to ``dst`` (float16 weights when ``half``), metadata kept."""
    ckpt = load_checkpoint(src)
    meta = {k: v for k, v in ckpt.meta.items() if k not in ("format", "arch", "weights_dtype")}
    meta["outputs"] = list(ckpt.outputs)
    meta["exported_from"] = {"sha256": ckpt.sha256, "weights_dtype": ckpt.meta["weights_dtype"]}
    save_checkpoint(dst, ckpt.net, meta, half=half)

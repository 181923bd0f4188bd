"""Resume and save: the training state file (``--resume``) and the checkpoint metadata."""

from __future__ import annotations

import logging
import math
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.checkpoint import save_checkpoint
from model.training.batches import Data
from model.training.config import TrainConfig, config_key
from worker.errors import ConfigError

__all__ = ["RunState", "checkpoint_meta", "combined_hash", "resume", "save"]

log = logging.getLogger("model.training")


@dataclass
class RunState:
    """Where a run stands: the best epoch so far, the history and the time spent."""

    best_state: dict[str, torch.Tensor]
    best: dict[str, Any] = field(default_factory=lambda: {"val_loss": math.inf})
    history: list[dict[str, Any]] = field(default_factory=list)
    start_epoch: int = 0
    elapsed: float = 0.0


def resume(
    cfg: TrainConfig,
    net: nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    run: RunState,
) -> None:
    """Load the training state file into ``net``, ``opt``, ``sched`` and ``run`` (``--resume``)."""
    state_path = cfg.state_path()
    if not state_path.is_file():
        log.warning("no training state at %s: starting from scratch", state_path)
        return
    saved = torch.load(state_path, map_location="cpu", weights_only=True)
    if saved.get("config") != config_key(cfg):
        raise ConfigError(
            f"{state_path}: saved with different options; rerun without --resume or with "
            "the same options"
        )
    net.load_state_dict(saved["net"])
    opt.load_state_dict(saved["opt"])
    sched.load_state_dict(saved["sched"])
    run.best_state, run.best, run.history = saved["best_state"], saved["best"], saved["history"]
    run.start_epoch, run.elapsed = int(saved["epoch"]) + 1, float(saved["elapsed"])
    log.info("resuming from %s at epoch %d", state_path, run.start_epoch + 1)


def save(
    cfg: TrainConfig,
    data: Data,
    data_hash: str,
    net: nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    run: RunState,
    epoch: int,
) -> dict[str, Any]:
    """Write the best checkpoint so far and the full training state; returns the metadata."""
    meta = checkpoint_meta(cfg, data, data_hash, run.best, run.history, run.elapsed)
    save_checkpoint(cfg.out, run.best_state, meta, half=cfg.half)
    torch.save(
        {
            "config": config_key(cfg),
            "epoch": epoch,
            "elapsed": run.elapsed,
            "net": net.state_dict(),
            "opt": opt.state_dict(),
            "sched": sched.state_dict(),
            "best_state": run.best_state,
            "best": run.best,
            "history": run.history,
        },
        cfg.state_path(),
    )
    return meta


def combined_hash(*hashes: str) -> str:
    import hashlib

    return hashlib.sha256("".join(hashes).encode()).hexdigest()


def checkpoint_meta(
    cfg: TrainConfig,
    data: Data,
    data_hash: str,
    best: dict[str, Any],
    history: list[dict[str, Any]],
    elapsed: float,
) -> dict[str, Any]:
    import torchvision

    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    return {
        "target_scale": data.target_scale,
        "outputs": list(data.outputs),
        "preprocess": data.preprocess.to_dict(),
        "protocol": data.protocol.to_dict(),
        "data_hash": data_hash,
        "command": cfg.command,
        "config": config,
        "metrics": {"selected": best, "history": history, "train_seconds": round(elapsed, 1)},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "software": {
            "torch": str(torch.__version__),
            "torchvision": str(torchvision.__version__),
            "python": platform.python_version(),
        },
    }

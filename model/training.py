"""Training: fit on ``train``, select the epoch with the lowest validation MSE on ``val``.

Every epoch makes fresh random versions of each training image (one original, one JPEG and
one blur, severities drawn from the protocol's ranges), so degradations stay random per epoch;
randomness comes from ``(seed, epoch)``, which makes runs reproducible and a resumed run
identical to an uninterrupted one. After every epoch the best checkpoint so far is written to
``out`` and the full training state to ``state`` (``--resume`` continues from it).
"""

from __future__ import annotations

import copy
import logging
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from model.checkpoint import save_checkpoint
from model.dataset import crops, eval_versions, load_split
from model.degradations import KINDS, Protocol, get_protocol
from model.inference import autocast, predict_images
from model.metrics import regression
from model.network import build_model
from model.preprocess import Preprocess
from worker.errors import ConfigError, ModelError

__all__ = ["TrainConfig", "train"]

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Training options. Defaults are the published hyper-parameters."""

    data: Path
    splits: Path
    out: Path
    protocol: str = "graded"
    init: str = "none"
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    optimizer: str = "adam"  # adam | adamw
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | cosine (per step, after a linear warm-up)
    warmup_epochs: float = 0.0
    augment: str = "paper"  # paper: flip + rotation + scale | flip | none
    crop: int = 224
    crop_align: int = 8  # crop corners on the 8-pixel JPEG grid, as at inference
    size: int = 256
    target: str = "raw"  # raw: regress the label | unit: regress label / 100
    bf16: bool = False
    seed: int = 0
    threads: int = 2
    limit: int = 0  # use only the first N images of each split (tests, smoke runs)
    val_levels: int = 3
    bn_recal: int = 0  # batches of fresh training data to re-estimate BatchNorm statistics
    state: Path | None = None
    resume: bool = False
    half: bool = False
    stop_after: int = 0  # train at most N epochs in this invocation (time-sliced jobs)
    command: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def state_path(self) -> Path:
        return self.state or self.out.with_name(self.out.name + ".state")

    def check(self) -> None:
        choices = {
            "optimizer": ("adam", "adamw"),
            "schedule": ("constant", "cosine"),
            "augment": ("paper", "flip", "none"),
            "target": ("raw", "unit"),
            "protocol": ("paper", "graded"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"--{name} {getattr(self, name)!r}: expected one of {allowed}")
        if not 16 <= self.crop <= self.size:
            raise ConfigError(f"--crop {self.crop}: expected 16..{self.size} (the --size)")
        if self.bn_recal < 0:
            raise ConfigError(f"--bn-recal {self.bn_recal}: expected 0 (off) or more batches")
        if self.crop_align < 1:
            raise ConfigError(f"--crop-align {self.crop_align}: expected 1 or more")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("--epochs, --batch-size and --lr must be positive")


def _augment(image: np.ndarray, mode: str, rng: np.random.Generator) -> np.ndarray:
    """Geometric augmentation of a CLEAN image (before any degradation is applied)."""
    if mode == "none":
        return image
    out = image[:, ::-1] if rng.random() < 0.5 else image
    if mode == "paper":
        angle = float(rng.uniform(-10.0, 10.0))
        scale = float(rng.uniform(0.9, 1.1))
        h, w = out.shape
        pil = Image.fromarray(np.ascontiguousarray(out), mode="L")
        cx, cy = w / 2.0, h / 2.0
        rad = math.radians(angle)
        a, b = math.cos(rad) / scale, math.sin(rad) / scale
        # inverse affine map (output -> input) of a rotation+scale about the centre
        coeffs = (a, b, cx - a * cx - b * cy, -b, a, cy + b * cx - a * cy)
        out = np.asarray(
            pil.transform((w, h), Image.Transform.AFFINE, coeffs, Image.Resampling.BICUBIC)
        )
    return np.ascontiguousarray(out)


def _lr_lambda(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    total = cfg.epochs * steps_per_epoch
    warm = int(cfg.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if cfg.schedule == "constant":
            return 1.0
        progress = (step - warm) / max(1, total - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _optimizer(cfg: TrainConfig, net: nn.Module) -> torch.optim.Optimizer:
    decay = [p for n, p in net.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in net.named_parameters() if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.Adam(groups, lr=cfg.lr)


def train(cfg: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Run training as configured; returns the metadata written into the checkpoint."""
    cfg.check()
    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    preprocess = Preprocess(size=cfg.size)
    protocol = get_protocol(cfg.protocol)
    train_set = load_split(cfg.data, cfg.splits, "train", preprocess, cfg.limit)
    val_set = load_split(cfg.data, cfg.splits, "val", preprocess, cfg.limit)
    val_versions, _ = eval_versions(val_set, protocol, levels=cfg.val_levels)
    val_images = [v.image for v in val_versions]
    val_labels = np.array([v.label for v in val_versions])
    target_scale = 100.0 if cfg.target == "unit" else 1.0

    net = build_model(cfg.init)
    with torch.no_grad():  # start the head at the mean label: no wasted first epoch
        head = net.fc
        assert isinstance(head, nn.Linear)
        head.bias.fill_(float(np.mean(val_labels)) / target_scale)
    net = net.to(memory_format=torch.channels_last)
    opt = _optimizer(cfg, net)
    n_items = len(train_set) * len(KINDS)
    steps = math.ceil(n_items / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, steps))
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"val_mse": math.inf}
    best_state: dict[str, torch.Tensor] = copy.deepcopy(net.state_dict())
    start_epoch = 0
    elapsed = 0.0
    state_path = cfg.state_path()
    if cfg.resume and state_path.is_file():
        saved = torch.load(state_path, map_location="cpu", weights_only=True)
        if saved.get("config") != _config_key(cfg):
            raise ConfigError(
                f"{state_path}: saved with different options; rerun without --resume or with "
                "the same options"
            )
        net.load_state_dict(saved["net"])
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        best_state, best, history = saved["best_state"], saved["best"], saved["history"]
        start_epoch, elapsed = int(saved["epoch"]) + 1, float(saved["elapsed"])
        log.info("resuming from %s at epoch %d", state_path, start_epoch + 1)
    elif cfg.resume:
        log.warning("no training state at %s: starting from scratch", state_path)

    data_hash = _combined_hash(train_set.data_hash, val_set.data_hash)
    loss_fn = nn.MSELoss()
    meta: dict[str, Any] = {}
    last = cfg.epochs if cfg.stop_after <= 0 else min(cfg.epochs, start_epoch + cfg.stop_after)
    for epoch in range(start_epoch, last):
        t0 = time.perf_counter()
        rng = np.random.default_rng([cfg.seed, epoch])
        torch.manual_seed(cfg.seed * 1000 + epoch)
        order = rng.permutation(n_items)
        net.train()
        total, seen = 0.0, 0
        bar = tqdm(
            range(steps),
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            unit="batch",
            disable=not progress,
            leave=False,
        )
        for step in bar:
            items = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            x, labels = _batch(cfg, train_set.images, items, protocol, preprocess, rng)
            y = torch.tensor(labels / target_scale, dtype=torch.float32)
            with autocast("cpu", cfg.bf16):
                out = net(x).view(-1)
            loss = loss_fn(out.float(), y)
            if not torch.isfinite(loss):
                raise ModelError(
                    f"training diverged at epoch {epoch + 1} (loss {loss.item()}); "
                    "lower --lr or use --target unit"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(items)
            seen += len(items)
            bar.set_postfix(loss=f"{total / seen * target_scale**2:.1f}")
        bar.close()
        if cfg.bn_recal:
            _recalibrate_bn(net, cfg, train_set.images, protocol, preprocess, epoch, n_items)
        pred = predict_images(net, val_images, preprocess, target_scale, 64, cfg.bf16)
        val = regression(pred, val_labels, logistic=False)
        elapsed += time.perf_counter() - t0
        record = {
            "epoch": epoch + 1,
            "train_mse": total / max(seen, 1) * target_scale**2,
            "val_mse": val["mse"],
            "val_mae": val["mae"],
            "val_plcc": val["plcc"],
            "val_srocc": val["srocc"],
            "lr": opt.param_groups[0]["lr"],
            "seconds": round(time.perf_counter() - t0, 1),
        }
        history.append(record)
        log.info(
            "epoch %d/%d: train MSE %.2f, val MSE %.2f, PLCC %s, SROCC %s (%.0f s)",
            epoch + 1,
            cfg.epochs,
            record["train_mse"],
            val["mse"],
            _fmt(val["plcc"]),
            _fmt(val["srocc"]),
            record["seconds"],
        )
        if val["mse"] < best["val_mse"]:
            best = dict(record)
            best_state = copy.deepcopy(net.state_dict())
        meta = _meta(
            cfg, preprocess, protocol.to_dict(), target_scale, data_hash, best, history, elapsed
        )
        save_checkpoint(cfg.out, best_state, meta, half=cfg.half)
        torch.save(
            {
                "config": _config_key(cfg),
                "epoch": epoch,
                "elapsed": elapsed,
                "net": net.state_dict(),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "best_state": best_state,
                "best": best,
                "history": history,
            },
            state_path,
        )
    if not meta:  # resumed a finished run: nothing left to do
        meta = _meta(
            cfg, preprocess, protocol.to_dict(), target_scale, data_hash, best, history, elapsed
        )
        save_checkpoint(cfg.out, best_state, meta, half=cfg.half)
    return meta


def _batch(
    cfg: TrainConfig,
    images: np.ndarray,
    items: np.ndarray,
    protocol: Protocol,
    preprocess: Preprocess,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, np.ndarray]:
    """Network input and labels for training items (item i = image i // 3, kind i % 3)."""
    versions = [
        protocol.sample(
            _augment(images[i // len(KINDS)], cfg.augment, rng), KINDS[i % len(KINDS)], rng
        )
        for i in items
    ]
    x = preprocess.tensor(crops([v.image for v in versions], cfg.crop, rng, cfg.crop_align))
    return x.contiguous(memory_format=torch.channels_last), np.array([v.label for v in versions])


@torch.no_grad()
def _recalibrate_bn(
    net: nn.Module,
    cfg: TrainConfig,
    images: np.ndarray,
    protocol: Protocol,
    preprocess: Preprocess,
    epoch: int,
    n_items: int,
) -> None:
    """Re-estimate every BatchNorm's running mean/variance for the current weights as the
    plain average over ``cfg.bn_recal`` fresh training batches ("precise BN").

    The exponential running average lags behind weights that change fast, and evaluation
    (and the Scorer) use those running statistics: without this the validation error of an
    epoch says more about stale statistics than about the weights. Only the statistics
    change, never the trained weights, and the data comes from its own random stream, so
    the training trajectory is the same with or without it.
    """
    rng = np.random.default_rng([cfg.seed, epoch, 7])
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    net.train()
    for _ in range(cfg.bn_recal):
        items = rng.integers(0, n_items, cfg.batch_size)
        x, _ = _batch(cfg, images, items, protocol, preprocess, rng)
        with autocast("cpu", cfg.bf16):
            net(x)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    net.eval()


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _combined_hash(*hashes: str) -> str:
    import hashlib

    return hashlib.sha256("".join(hashes).encode()).hexdigest()


def _config_key(cfg: TrainConfig) -> dict[str, Any]:
    """The options that must match for ``--resume`` (paths and run control excluded;
    ``bn_recal`` changes statistics only, never the trained weights, so a run may be
    resumed with it switched on)."""
    skip = {
        "bn_recal",
        "data",
        "splits",
        "out",
        "state",
        "resume",
        "command",
        "extra",
        "threads",
        "half",
        "stop_after",
    }
    return {k: v for k, v in asdict(cfg).items() if k not in skip}


def _meta(
    cfg: TrainConfig,
    preprocess: Preprocess,
    protocol: dict[str, Any],
    target_scale: float,
    data_hash: str,
    best: dict[str, Any],
    history: list[dict[str, Any]],
    elapsed: float,
) -> dict[str, Any]:
    import torchvision

    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    return {
        "target_scale": target_scale,
        "preprocess": preprocess.to_dict(),
        "protocol": protocol,
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

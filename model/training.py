"""Training: fit on ``train``, select the epoch with the lowest validation loss on ``val``.

Every epoch makes fresh random versions of each training image (``paper``/``graded``: one
original, one JPEG and one blur; ``defects``: one clean and three degraded versions, see
:mod:`model.protocols`), so degradations stay random per epoch; randomness comes from
``(seed, epoch, batch)``, which makes runs reproducible and a resumed run identical to an
uninterrupted one. The next batch is made in a helper thread while the current one trains.
After every epoch the best checkpoint so far is written to ``out`` and the full training
state to ``state`` (``--resume`` continues from it).

With the ``defects`` protocol the network has every output of :data:`model.network.OUTPUTS`
and the loss is ``10 MSE(score / 100) + 2 BCE(defects) + 0.5 BCE(not ultrasound)``:
the score and defect terms on ultrasound versions only, the gate term on all, with
``nonus_share`` extra items per epoch drawn from the training split of
:mod:`model.nonultrasound` (worksheets, charts, photographs, CT/MR; never BUSI test images).
Without it the loss is the plain MSE of the score, as published. The selected epoch is the
one with the lowest validation loss (the same formula on the validation versions and the
validation split of the non-ultrasound material; plain score MSE without defects).
"""

from __future__ import annotations

import copy
import logging
import math
import platform
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
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
from model.inference import autocast, forward_images
from model.metrics import regression
from model.network import OUTPUTS, SCORE_ONLY, build_model
from model.preprocess import Preprocess
from model.protocols import AnyProtocol, Degraded, get_protocol
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
    nonus_share: float = 0.1  # defects: extra non-ultrasound items, share of the epoch
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
            "protocol": ("paper", "graded", "defects"),
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
        if not 0.0 <= self.nonus_share < 1.0:
            raise ConfigError(f"--nonus-share {self.nonus_share}: expected 0 <= share < 1")
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


@dataclass
class _Data:
    """What one training run works on."""

    cfg: TrainConfig
    protocol: AnyProtocol
    preprocess: Preprocess
    images: np.ndarray  # the training split, (N, size, size) uint8
    outputs: tuple[str, ...]
    target_scale: float

    @property
    def defects(self) -> bool:
        return len(self.outputs) > 1

    @property
    def items(self) -> int:
        """Ultrasound items per epoch (image x version slot)."""
        return len(self.images) * self.protocol.versions_per_image

    @property
    def nonus_items(self) -> int:
        if not self.defects or self.cfg.nonus_share <= 0:
            return 0
        return round(self.items * self.cfg.nonus_share / (1.0 - self.cfg.nonus_share))


@dataclass
class _Batch:
    """A training batch: the network input and the targets of each output."""

    x: torch.Tensor
    score: torch.Tensor  # (B,) label / target_scale; ignored where ``is_us`` is 0
    defects: torch.Tensor  # (B, defects)
    is_us: torch.Tensor  # (B,) 1 for ultrasound versions
    labels: np.ndarray


def _versions_batch(data: _Data, versions: list[Degraded], rng: np.random.Generator) -> _Batch:
    """Crop windows of ``versions`` and stack their targets."""
    cfg = data.cfg
    x = data.preprocess.tensor(crops([v.image for v in versions], cfg.crop, rng, cfg.crop_align))
    labels = np.array([v.label for v in versions], dtype=np.float32)
    n_def = len(data.outputs) - 2 if data.defects else 0
    targets = np.zeros((len(versions), n_def), dtype=np.float32)
    is_us = np.ones(len(versions), dtype=np.float32)
    for row, v in enumerate(versions):
        if v.kind == "not_ultrasound":
            is_us[row] = 0.0
        elif n_def and v.targets is not None:
            targets[row] = v.targets
    return _Batch(
        x.contiguous(memory_format=torch.channels_last),
        torch.from_numpy(labels / data.target_scale),
        torch.from_numpy(targets),
        torch.from_numpy(is_us),
        labels,
    )


def _nonus_version(image: np.ndarray, preprocess: Preprocess) -> Degraded:
    return Degraded(preprocess.image(image), "not_ultrasound", 0.0, 0.0)


def _make_batch(
    data: _Data, order: np.ndarray, step: int, epoch: int, nonus: list[np.ndarray]
) -> _Batch:
    """Batch ``step`` of an epoch (items in ``order``: below ``data.items`` an ultrasound
    item = image i // slots, slot i % slots; above, a non-ultrasound image)."""
    cfg = data.cfg
    rng = np.random.default_rng([cfg.seed, epoch, step])
    items = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
    slots = data.protocol.versions_per_image
    versions = []
    for i in items:
        if i >= data.items:
            versions.append(_nonus_version(nonus[int(i) - data.items], data.preprocess))
            continue
        image = _augment(data.images[int(i) // slots], cfg.augment, rng)
        versions.append(data.protocol.version(image, int(i) % slots, rng))
    return _versions_batch(data, versions, rng)


def _loss(data: _Data, out: torch.Tensor, batch: _Batch) -> torch.Tensor:
    """The training loss (see the module docstring)."""
    out = out.float()
    if not data.defects:
        return nn.functional.mse_loss(out[:, 0], batch.score)
    us = batch.is_us
    n_us = us.sum().clamp(min=1.0)
    mse = (((out[:, 0] - batch.score) ** 2) * us).sum() / n_us
    bce = nn.functional.binary_cross_entropy_with_logits(
        out[:, 1:-1], batch.defects, reduction="none"
    ).mean(dim=1)
    gate = nn.functional.binary_cross_entropy_with_logits(out[:, -1], 1.0 - us)
    return 10.0 * mse + 2.0 * (bce * us).sum() / n_us + 0.5 * gate


def _nonus_images(split: str, n: int, seed: int) -> list[np.ndarray]:
    from model.nonultrasound import sample

    return [item.image for item in sample(split, n, seed)]


def _validation(data: _Data, versions: list[Degraded], nonus: list[np.ndarray]) -> dict[str, Any]:
    """Validation figures of the network's current weights (see :func:`_val_loss`)."""
    return {"versions": versions, "nonus": [_nonus_version(im, data.preprocess) for im in nonus]}


def _evaluate_val(net: nn.Module, data: _Data, val: dict[str, Any]) -> dict[str, Any]:
    """Score MSE, PLCC, SROCC and (defects) the validation loss, defect BCE and gate error."""
    cfg = data.cfg
    versions: list[Degraded] = val["versions"]
    all_versions = versions + val["nonus"]
    raw = forward_images(net, [v.image for v in all_versions], data.preprocess, 64, cfg.bf16)
    n = len(versions)
    labels = np.array([v.label for v in versions])
    pred = np.clip(raw[:n, 0] * data.target_scale, 0.0, 100.0)
    reg = regression(pred, labels, logistic=False)
    record: dict[str, Any] = {
        "val_mse": reg["mse"],
        "val_mae": reg["mae"],
        "val_plcc": reg["plcc"],
        "val_srocc": reg["srocc"],
        "val_loss": reg["mse"],
    }
    if data.defects:
        batch = _versions_batch(data, all_versions, np.random.default_rng(0))
        with torch.no_grad():
            loss = _loss(data, torch.from_numpy(raw), batch)
        gate = 1.0 / (1.0 + np.exp(-raw[:, -1]))
        truth = np.r_[np.zeros(n), np.ones(len(all_versions) - n)]
        record.update(
            val_loss=float(loss),
            val_gate_error=float(np.mean((gate > 0.5) != truth)),
        )
    return record


def train(cfg: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Run training as configured; returns the metadata written into the checkpoint."""
    cfg.check()
    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    preprocess = Preprocess(size=cfg.size)
    protocol = get_protocol(cfg.protocol)
    outputs = OUTPUTS if protocol.name == "defects" else SCORE_ONLY
    train_set = load_split(cfg.data, cfg.splits, "train", preprocess, cfg.limit)
    val_set = load_split(cfg.data, cfg.splits, "val", preprocess, cfg.limit)
    val_versions, _ = eval_versions(val_set, protocol, levels=cfg.val_levels)
    target_scale = 100.0 if cfg.target == "unit" else 1.0
    data = _Data(cfg, protocol, preprocess, train_set.images, outputs, target_scale)
    val_nonus = _nonus_images("val", max(8, len(val_set) // 2), cfg.seed) if data.defects else []
    val = _validation(data, val_versions, val_nonus)

    net = build_model(cfg.init, outputs)
    if cfg.init == "none" or not Path(cfg.init).is_file() or cfg.init == "imagenet":
        with torch.no_grad():  # start the score at the mean label: no wasted first epoch
            head = net.fc
            assert isinstance(head, nn.Linear)
            head.bias[0] = float(np.mean([v.label for v in val_versions])) / target_scale
    net = net.to(memory_format=torch.channels_last)
    opt = _optimizer(cfg, net)
    n_items = data.items + data.nonus_items
    steps = math.ceil(n_items / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, steps))
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"val_loss": math.inf}
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
    meta: dict[str, Any] = {}
    last = cfg.epochs if cfg.stop_after <= 0 else min(cfg.epochs, start_epoch + cfg.stop_after)
    with ThreadPoolExecutor(1, thread_name_prefix="usqa-train-data") as maker:
        for epoch in range(start_epoch, last):
            t0 = time.perf_counter()
            record = _epoch(data, net, opt, sched, maker, epoch, steps, progress)
            if cfg.bn_recal:
                _recalibrate_bn(net, data, epoch)
            net.eval()
            record.update(_evaluate_val(net, data, val))
            elapsed += time.perf_counter() - t0
            record.update(lr=opt.param_groups[0]["lr"], seconds=round(time.perf_counter() - t0, 1))
            history.append(record)
            log.info(
                "epoch %d/%d: train loss %.4f, val loss %.4f, val MSE %.2f, PLCC %s, SROCC %s%s "
                "(%.0f s)",
                epoch + 1,
                cfg.epochs,
                record["train_loss"],
                record["val_loss"],
                record["val_mse"],
                _fmt(record["val_plcc"]),
                _fmt(record["val_srocc"]),
                f", gate error {record['val_gate_error']:.3f}"
                if "val_gate_error" in record
                else "",
                record["seconds"],
            )
            if record["val_loss"] < best.get("val_loss", math.inf):
                best = dict(record)
                best_state = copy.deepcopy(net.state_dict())
            meta = _meta(cfg, data, data_hash, best, history, elapsed)
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
        meta = _meta(cfg, data, data_hash, best, history, elapsed)
        save_checkpoint(cfg.out, best_state, meta, half=cfg.half)
    return meta


def _epoch(
    data: _Data,
    net: nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    maker: ThreadPoolExecutor,
    epoch: int,
    steps: int,
    progress: bool,
) -> dict[str, Any]:
    """One pass over the epoch's items; the next batch is made while this one trains."""
    cfg = data.cfg
    rng = np.random.default_rng([cfg.seed, epoch])
    torch.manual_seed(cfg.seed * 1000 + epoch)
    order = rng.permutation(data.items + data.nonus_items)
    nonus = (
        _nonus_images("train", data.nonus_items, cfg.seed * 1000 + epoch)
        if data.nonus_items
        else []
    )
    net.train()
    total, seen, mse_total = 0.0, 0, 0.0
    bar = tqdm(
        range(steps),
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        unit="batch",
        disable=not progress,
        leave=False,
    )
    pending: Future[_Batch] = maker.submit(_make_batch, data, order, 0, epoch, nonus)
    for step in bar:
        batch = pending.result()
        if step + 1 < steps:
            pending = maker.submit(_make_batch, data, order, step + 1, epoch, nonus)
        with autocast("cpu", cfg.bf16):
            out = net(batch.x)
        out = out.float().reshape(out.shape[0], -1)
        loss = _loss(data, out, batch)
        if not torch.isfinite(loss):
            raise ModelError(
                f"training diverged at epoch {epoch + 1} (loss {loss.item()}); "
                "lower --lr or use --target unit"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        n = len(batch.labels)
        total += float(loss.detach()) * n
        with torch.no_grad():
            us = batch.is_us
            err = ((out[:, 0].detach() - batch.score) ** 2 * us).sum() / us.sum().clamp(min=1.0)
        mse_total += float(err) * n
        seen += n
        bar.set_postfix(loss=f"{total / seen:.4f}")
    bar.close()
    return {
        "epoch": epoch + 1,
        "train_loss": total / max(seen, 1),
        "train_mse": mse_total / max(seen, 1) * data.target_scale**2,
    }


@torch.no_grad()
def _recalibrate_bn(net: nn.Module, data: _Data, epoch: int) -> None:
    """Re-estimate every BatchNorm's running mean/variance for the current weights as the
    plain average over ``cfg.bn_recal`` fresh training batches ("precise BN").

    The exponential running average lags behind weights that change fast, and evaluation
    (and the Scorer) use those running statistics: without this the validation error of an
    epoch says more about stale statistics than about the weights. Only the statistics
    change, never the trained weights, and the data comes from its own random stream, so
    the training trajectory is the same with or without it.
    """
    cfg = data.cfg
    rng = np.random.default_rng([cfg.seed, epoch, 7])
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    net.train()
    nonus = (
        _nonus_images("train", cfg.batch_size, cfg.seed * 7919 + epoch) if data.nonus_items else []
    )
    n_items = data.items + len(nonus)
    for step in range(cfg.bn_recal):
        order = rng.integers(0, n_items, cfg.batch_size)
        batch = _make_batch(data, order, 0, epoch * 1000 + 500 + step, nonus)
        with autocast("cpu", cfg.bf16):
            net(batch.x)
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
    data: _Data,
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

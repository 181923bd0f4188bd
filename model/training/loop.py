"""One training epoch, BatchNorm re-estimation, validation, the optimiser and LR schedule."""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from model.inference import autocast, forward_images
from model.metrics import regression
from model.protocols import Degraded
from model.training.batches import (
    Batch,
    Data,
    make_batch,
    nonus_images,
    nonus_version,
    training_loss,
    versions_batch,
)
from model.training.config import TrainConfig
from worker.errors import ModelError

__all__ = ["evaluate_val", "lr_lambda", "optimizer", "recalibrate_bn", "run_epoch", "validation"]


def lr_lambda(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
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


def optimizer(cfg: TrainConfig, net: nn.Module) -> torch.optim.Optimizer:
    decay = [p for n, p in net.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in net.named_parameters() if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.Adam(groups, lr=cfg.lr)


def validation(data: Data, versions: list[Degraded], nonus: list[np.ndarray]) -> dict[str, Any]:
    """Validation figures of the network's current weights (see :func:`evaluate_val`)."""
    return {"versions": versions, "nonus": [nonus_version(im, data.preprocess) for im in nonus]}


def evaluate_val(net: nn.Module, data: Data, val: dict[str, Any]) -> dict[str, Any]:
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
        batch = versions_batch(data, all_versions, np.random.default_rng(0))
        with torch.no_grad():
            loss = training_loss(data, torch.from_numpy(raw), batch)
        gate = 1.0 / (1.0 + np.exp(-raw[:, -1]))
        truth = np.r_[np.zeros(n), np.ones(len(all_versions) - n)]
        record.update(
            val_loss=float(loss),
            val_gate_error=float(np.mean((gate > 0.5) != truth)),
        )
    return record


def run_epoch(
    data: Data,
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
        nonus_images("train", data.nonus_items, cfg.seed * 1000 + epoch) if data.nonus_items else []
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
    pending: Future[Batch] = maker.submit(make_batch, data, order, 0, epoch, nonus)
    for step in bar:
        batch = pending.result()
        if step + 1 < steps:
            pending = maker.submit(make_batch, data, order, step + 1, epoch, nonus)
        with autocast("cpu", cfg.bf16):
            out = net(batch.x)
        out = out.float().reshape(out.shape[0], -1)
        loss = training_loss(data, out, batch)
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
def recalibrate_bn(net: nn.Module, data: Data, epoch: int) -> None:
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
        nonus_images("train", cfg.batch_size, cfg.seed * 7919 + epoch) if data.nonus_items else []
    )
    n_items = data.items + len(nonus)
    for step in range(cfg.bn_recal):
        order = rng.integers(0, n_items, cfg.batch_size)
        batch = make_batch(data, order, 0, epoch * 1000 + 500 + step, nonus)
        with autocast("cpu", cfg.bf16):
            net(batch.x)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    net.eval()

"""The training run: a short orchestrator over data, network, resume, epochs and save."""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model.checkpoint import save_checkpoint
from model.dataset import eval_versions, load_split
from model.network import OUTPUTS, SCORE_ONLY, build_model
from model.phantom import phantoms
from model.preprocess import Preprocess
from model.protocols import AnyProtocol, DefectProtocol, Degraded, get_protocol
from model.reviewed import ReviewedProtocol, fine_tune_start
from model.training.batches import Data, nonus_images
from model.training.config import TrainConfig
from model.training.loop import evaluate_val, lr_lambda, optimizer, recalibrate_bn, run_epoch
from model.training.loop import validation as make_validation
from model.training.state import RunState, checkpoint_meta, combined_hash, resume, save

__all__ = ["train"]

log = logging.getLogger("model.training")


def train(cfg: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Run training as configured; returns the metadata written into the checkpoint."""
    cfg.check()
    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    data, val, val_versions, data_hash = _prepare(cfg)
    net = _build_net(cfg, data, val_versions)
    opt = optimizer(cfg, net)
    steps = math.ceil((data.items + data.nonus_items) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, steps))
    run = RunState(copy.deepcopy(net.state_dict()))
    if cfg.resume:
        resume(cfg, net, opt, sched, run)
    meta: dict[str, Any] = {}
    last = cfg.epochs if cfg.stop_after <= 0 else min(cfg.epochs, run.start_epoch + cfg.stop_after)
    with ThreadPoolExecutor(1, thread_name_prefix="usqa-train-data") as maker:
        for epoch in range(run.start_epoch, last):
            record = _train_and_validate(
                data, net, opt, sched, maker, val, epoch, steps, progress, run
            )
            if record["val_loss"] < run.best.get("val_loss", math.inf):
                run.best = dict(record)
                run.best_state = copy.deepcopy(net.state_dict())
            meta = save(cfg, data, data_hash, net, opt, sched, run, epoch)
    if not meta:  # resumed a finished run: nothing left to do
        meta = checkpoint_meta(cfg, data, data_hash, run.best, run.history, run.elapsed)
        save_checkpoint(cfg.out, run.best_state, meta, half=cfg.half)
    return meta


def _prepare(cfg: TrainConfig) -> tuple[Data, dict[str, Any], list[Degraded], str]:
    """The training data, the validation set, its versions and the combined data hash."""
    protocol, preprocess, outputs = _protocol(cfg)
    train_set = load_split(cfg.data, cfg.splits, "train", preprocess, cfg.limit)
    val_set = load_split(cfg.data, cfg.splits, "val", preprocess, cfg.limit)
    if isinstance(protocol, ReviewedProtocol):
        protocol.check_paths("train", train_set.paths)
        val_versions = protocol.val_versions(val_set)
    else:
        val_versions, _ = eval_versions(val_set, protocol, levels=cfg.val_levels)
    target_scale = 100.0 if cfg.target == "unit" else 1.0
    images = train_set.images
    if protocol.name == "defects" and cfg.phantom_share > 0:
        n = round(len(images) * cfg.phantom_share / (1.0 - cfg.phantom_share))
        images = np.concatenate([images, phantoms(n, images.shape[-1], cfg.seed)])
    data = Data(cfg, protocol, preprocess, images, outputs, target_scale)
    val_nonus = nonus_images("val", max(8, len(val_set) // 2), cfg.seed) if data.defects else []
    val = make_validation(data, val_versions, val_nonus)
    hashes = [train_set.data_hash, val_set.data_hash]
    if isinstance(protocol, ReviewedProtocol):  # the reviewers' labels are data too
        hashes.append(protocol.labels_sha256)
    return data, val, val_versions, combined_hash(*hashes)


def _protocol(
    cfg: TrainConfig,
) -> tuple[AnyProtocol | ReviewedProtocol, Preprocess, tuple[str, ...]]:
    """The protocol, the preprocessing preset and the outputs of a run."""
    if cfg.protocol == "reviewed":  # fine-tuning: the preset and outputs of --init
        start = fine_tune_start(cfg.init)
        start.check(cfg.size, cfg.target)
        return ReviewedProtocol.load(cfg.splits, cfg.limit), start.preprocess, start.outputs
    protocol = get_protocol(cfg.protocol)
    if isinstance(protocol, DefectProtocol) and cfg.dual_share > 0:
        protocol = dataclasses.replace(protocol, dual_share=cfg.dual_share)
    outputs = OUTPUTS if protocol.name == "defects" else SCORE_ONLY
    return protocol, Preprocess(size=cfg.size), outputs


def _build_net(cfg: TrainConfig, data: Data, val_versions: list[Degraded]) -> nn.Module:
    """The network, its score bias at the mean validation label unless initialised from a file."""
    net = build_model(cfg.init, data.outputs)
    if cfg.init == "none" or not Path(cfg.init).is_file() or cfg.init == "imagenet":
        with torch.no_grad():  # start the score at the mean label: no wasted first epoch
            head = net.fc
            assert isinstance(head, nn.Linear)
            head.bias[0] = float(np.mean([v.label for v in val_versions])) / data.target_scale
    return net.to(memory_format=torch.channels_last)


def _train_and_validate(
    data: Data,
    net: nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    maker: ThreadPoolExecutor,
    val: dict[str, Any],
    epoch: int,
    steps: int,
    progress: bool,
    run: RunState,
) -> dict[str, Any]:
    """One epoch, BatchNorm re-estimation if asked, validation; the record joins the history."""
    cfg = data.cfg
    t0 = time.perf_counter()
    record = run_epoch(data, net, opt, sched, maker, epoch, steps, progress)
    if cfg.bn_recal:
        recalibrate_bn(net, data, epoch)
    net.eval()
    record.update(evaluate_val(net, data, val))
    run.elapsed += time.perf_counter() - t0
    record.update(lr=opt.param_groups[0]["lr"], seconds=round(time.perf_counter() - t0, 1))
    run.history.append(record)
    log.info(
        "epoch %d/%d: train loss %.4f, val loss %.4f, val MSE %.2f, PLCC %s, SROCC %s%s (%.0f s)",
        epoch + 1,
        cfg.epochs,
        record["train_loss"],
        record["val_loss"],
        record["val_mse"],
        _fmt(record["val_plcc"]),
        _fmt(record["val_srocc"]),
        f", gate error {record['val_gate_error']:.3f}" if "val_gate_error" in record else "",
        record["seconds"],
    )
    return record


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"

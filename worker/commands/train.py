"""``usqa train``: fit the quality model on a folder of images and a splits file.

Defaults are the published hyper-parameters (Adam, lr 1e-3, 10 epochs, batch 16, rotation /
flip / scale augmentation); the shipped model's command in model/MODEL_CARD.md overrides some.
``--protocol reviewed`` fine-tunes the ``--init`` checkpoint on the folder that ``usqa
export-reviews`` wrote (``--splits`` its labels.csv); its ``--size`` and ``--target`` default
to the checkpoint's.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from worker.settings import Settings

__all__ = ["add_parser", "run"]

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train the quality model (for model maintainers)",
        description="Train the ResNet-18 quality regressor on pseudo-labelled degraded images. "
        "Fits on the 'train' split, keeps the epoch with the lowest MSE on 'val'. Writes a "
        "checkpoint usable with --weights / USQA_WEIGHTS.",
    )
    p.add_argument("--data", type=Path, required=True, help="folder holding the images")
    p.add_argument(
        "--splits",
        type=Path,
        required=True,
        help="CSV with columns path (relative to --data) and split (train/val/test)",
    )
    p.add_argument("--out", type=Path, required=True, help="checkpoint file to write")
    p.add_argument(
        "--protocol",
        choices=["paper", "graded", "defects", "reviewed"],
        default="graded",
        help="pseudo-label protocol: defects (every defect, score + defect + "
        "not-ultrasound outputs: the shipped model), graded (JPEG and blur) or paper "
        "(100/60/30); or reviewed: fine-tune the --init checkpoint on reviewers' grades and "
        "defects exported by `usqa export-reviews` (--data its folder, --splits its "
        "labels.csv) (default graded)",
    )
    p.add_argument(
        "--init",
        default="none",
        help="initial weights: none, imagenet (needs internet or torchvision's "
        "cache), a local resnet18 .pth file or a usqa checkpoint (its backbone and score "
        "head; reviewed: required, with every output it has) (default none)",
    )
    p.add_argument("--epochs", type=int, default=10, help="epochs (default 10)")
    p.add_argument(
        "--batch-size",
        dest="train_batch_size",
        type=int,
        default=16,
        help="training batch size (default 16)",
    )
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    p.add_argument(
        "--optimizer", choices=["adam", "adamw"], default="adam", help="optimizer (default adam)"
    )
    p.add_argument(
        "--weight-decay",
        type=float,
        default=0.0,
        help="weight decay on conv/linear weights (default 0)",
    )
    p.add_argument(
        "--schedule",
        choices=["constant", "cosine"],
        default="constant",
        help="learning-rate schedule per step (default constant)",
    )
    p.add_argument(
        "--warmup-epochs",
        type=float,
        default=0.0,
        help="linear learning-rate warm-up, in epochs (default 0)",
    )
    p.add_argument(
        "--augment",
        choices=["paper", "flip", "none"],
        default="paper",
        help="geometric augmentation of the clean image before degradation: paper = "
        "horizontal flip + rotation +-10 deg + scale 0.9-1.1; flip = flip only",
    )
    p.add_argument(
        "--crop",
        type=int,
        default=224,
        help="side of the random training window cut from the preset image, no "
        "resampling (default 224)",
    )
    p.add_argument(
        "--bn-recal",
        type=int,
        default=0,
        help="after each epoch, re-estimate BatchNorm statistics on this many fresh training "
        "batches before validating and saving (0 = off, the published behaviour)",
    )
    p.add_argument(
        "--crop-align",
        type=int,
        default=8,
        help="training windows start on multiples of this many pixels; 8 keeps the JPEG block "
        "grid where the scorer sees it (default 8; 1 = any position)",
    )
    p.add_argument(
        "--size",
        type=int,
        default=None,
        help="preset image size every frame is resized to (default 256; reviewed: the "
        "--init checkpoint's)",
    )
    p.add_argument(
        "--target",
        choices=["raw", "unit"],
        default=None,
        help="regress the label itself (raw) or label/100 (unit) (default raw; reviewed: "
        "the --init checkpoint's)",
    )
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (faster on recent CPUs)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--train-threads",
        dest="train_threads",
        type=int,
        default=2,
        help="torch threads (default 2)",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=0,
        help="use only the first N images of each split (smoke tests)",
    )
    p.add_argument(
        "--val-levels",
        type=int,
        default=3,
        help="graded: severities per degradation per validation image (default 3)",
    )
    p.add_argument(
        "--state",
        type=Path,
        default=None,
        help="training state file for --resume (default OUT.state)",
    )
    p.add_argument("--resume", action="store_true", help="continue from the state file")
    p.add_argument(
        "--half",
        action="store_true",
        help="store the checkpoint's weights as float16 (half the file size)",
    )
    p.add_argument(
        "--nonus-share",
        type=float,
        default=0.1,
        help="defects: share of each epoch made of non-ultrasound images for the gate "
        "(default 0.1)",
    )
    p.add_argument(
        "--phantom-share",
        type=float,
        default=0.0,
        help="defects: share of the source images that are synthetic scenes of other organs "
        "(abdomen, heart, vessels, obstetric, muscle; see model/phantom.py) added to the "
        "training split (default 0: BUSI only)",
    )
    p.add_argument(
        "--dual-share",
        type=float,
        default=0.0,
        help="defects: share of versions shown as a scanner's dual screen (the image twice "
        "side by side, squeezed to a square as scoring does; default 0)",
    )
    p.add_argument(
        "--defect-pos-weight",
        type=float,
        default=1.0,
        help="defects: weight of a present defect in its cross-entropy term, for defects "
        "present in few versions (default 1: unweighted)",
    )
    p.add_argument(
        "--low-score-weight",
        type=float,
        default=0.0,
        help="defects: extra weight of the score error as the label falls, 1 + K x (1 - "
        "label/100), to separate the strongest severities (default 0: unweighted)",
    )
    p.add_argument(
        "--ladder-share",
        type=float,
        default=0.0,
        help="defects: share of degraded items drawn together with a sibling, the same "
        "image, view and layout at another severity of its defect (default 0)",
    )
    p.add_argument(
        "--rank-weight",
        type=float,
        default=0.0,
        help="defects: weight of a ranking term that asks the sibling with more of a defect "
        "to score lower by at least --rank-margin times the label difference (default 0: "
        "off; needs --ladder-share)",
    )
    p.add_argument(
        "--rank-margin",
        type=float,
        default=0.5,
        help="defects: the score gap the ranking term asks of two siblings, as a share of "
        "their label gap, above 0 and at most 1 (default 0.5)",
    )
    p.add_argument(
        "--ladder-rungs",
        type=int,
        default=2,
        help="defects: severities of the defect in each ladder, 2 to 6; every two of them "
        "make a pair to rank (default 2)",
    )
    p.add_argument(
        "--ladder-clean",
        action="store_true",
        help="defects: each ladder also holds its image without the defect (label 100), "
        "so the ranking term asks a mild defect to score below the clean view",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace, settings: Settings) -> int:
    from model.training import TrainConfig, train

    size, target = args.size, args.target
    if args.protocol == "reviewed" and (size is None or target is None):
        from model.reviewed import fine_tune_start

        start = fine_tune_start(args.init)
        size = start.preprocess.size if size is None else size
        target = start.target if target is None else target
    cfg = TrainConfig(
        data=args.data,
        splits=args.splits,
        out=args.out,
        protocol=args.protocol,
        init=args.init,
        epochs=args.epochs,
        batch_size=args.train_batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        warmup_epochs=args.warmup_epochs,
        augment=args.augment,
        crop=args.crop,
        crop_align=args.crop_align,
        bn_recal=args.bn_recal,
        size=256 if size is None else size,
        target=target or "raw",
        bf16=args.bf16,
        seed=args.seed,
        threads=args.train_threads,
        limit=args.limit,
        val_levels=args.val_levels,
        state=args.state,
        resume=args.resume,
        half=args.half,
        nonus_share=args.nonus_share,
        phantom_share=args.phantom_share,
        dual_share=args.dual_share,
        defect_pos_weight=args.defect_pos_weight,
        low_score_weight=args.low_score_weight,
        ladder_share=args.ladder_share,
        rank_weight=args.rank_weight,
        rank_margin=args.rank_margin,
        ladder_rungs=args.ladder_rungs,
        ladder_clean=args.ladder_clean,
        command="usqa " + shlex.join(sys.argv[1:]) if sys.argv else "",
    )
    meta = train(cfg, progress=not args.no_progress)
    best = meta["metrics"]["selected"]
    log.info(
        "wrote %s: epoch %s selected, val MSE %.2f, %.0f s of training",
        args.out,
        best.get("epoch"),
        best.get("val_mse", float("nan")),
        meta["metrics"]["train_seconds"],
    )
    return 0

"""What a run trains on (:class:`Data`), the batches made from it and the training loss.

Randomness comes from ``(seed, epoch, batch)`` so that a batch is the same whichever thread
makes it and whether or not the run was resumed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from model.dataset import crops
from model.preprocess import Preprocess
from model.protocols import AnyProtocol, DefectProtocol, Degraded
from model.reviewed import ReviewedProtocol
from model.training.config import TrainConfig

__all__ = [
    "Batch",
    "Data",
    "make_batch",
    "nonus_images",
    "nonus_version",
    "ranking_loss",
    "training_loss",
    "versions_batch",
]


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


@dataclass
class Data:
    """What one training run works on."""

    cfg: TrainConfig
    protocol: AnyProtocol | ReviewedProtocol
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

    def version(
        self, image: np.ndarray, source: int, slot: int, rng: np.random.Generator
    ) -> Degraded:
        """Version ``slot`` of training image ``source`` (``image``: it, augmented); a
        reviewed image is itself with its reviewers' label."""
        if isinstance(self.protocol, ReviewedProtocol):
            return self.protocol.source_version(image, source)
        return self.protocol.version(image, slot, rng)


@dataclass
class Batch:
    """A training batch: the network input and the targets of each output."""

    x: torch.Tensor
    score: torch.Tensor  # (B,) label / target_scale; ignored where ``is_us`` is 0
    defects: torch.Tensor  # (B, defects)
    is_us: torch.Tensor  # (B,) 1 for ultrasound versions
    labels: np.ndarray
    pairs: torch.Tensor | None = None  # (P, 2) rows of a ladder: [higher label, lower label]


def versions_batch(
    data: Data,
    versions: list[Degraded],
    rng: np.random.Generator,
    ladders: list[list[int]] | None = None,
) -> Batch:
    """Crop windows of ``versions`` and stack their targets. The rows of each of
    ``ladders`` (siblings of one image) share one window and make the batch's pairs."""
    cfg = data.cfg
    same_as = [-1] * len(versions)
    pairs: list[list[int]] = []
    for rows in ladders or []:
        for row in rows[1:]:
            same_as[row] = rows[0]
        for a in rows:
            for b in rows:
                if versions[a].label > versions[b].label:
                    pairs.append([a, b])
    x = data.preprocess.tensor(
        crops([v.image for v in versions], cfg.crop, rng, cfg.crop_align, same_as)
    )
    labels = np.array([v.label for v in versions], dtype=np.float32)
    n_def = len(data.outputs) - 2 if data.defects else 0
    targets = np.zeros((len(versions), n_def), dtype=np.float32)
    is_us = np.ones(len(versions), dtype=np.float32)
    for row, v in enumerate(versions):
        if v.kind == "not_ultrasound":
            is_us[row] = 0.0
        elif n_def and v.targets is not None:
            targets[row] = v.targets
    return Batch(
        x.contiguous(memory_format=torch.channels_last),
        torch.from_numpy(labels / data.target_scale),
        torch.from_numpy(targets),
        torch.from_numpy(is_us),
        labels,
        torch.tensor(pairs, dtype=torch.long) if pairs else None,
    )


def nonus_version(image: np.ndarray, preprocess: Preprocess) -> Degraded:
    return Degraded(preprocess.image(image), "not_ultrasound", 0.0, 0.0)


def make_batch(
    data: Data, order: np.ndarray, step: int, epoch: int, nonus: list[np.ndarray]
) -> Batch:
    """Batch ``step`` of an epoch (items in ``order``: below ``data.items`` an ultrasound
    item = image i // slots, slot i % slots; above, a non-ultrasound image)."""
    cfg = data.cfg
    rng = np.random.default_rng([cfg.seed, epoch, step])
    items = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
    slots = data.protocol.versions_per_image
    versions: list[Degraded] = []
    ladders: list[list[int]] = []
    for i in items:
        if i >= data.items:
            versions.append(nonus_version(nonus[int(i) - data.items], data.preprocess))
            continue
        source, slot = divmod(int(i), slots)
        image = _augment(data.images[source], cfg.augment, rng)
        protocol = data.protocol
        if (
            cfg.ladder_share > 0
            and isinstance(protocol, DefectProtocol)
            and rng.random() < cfg.ladder_share
        ):
            rungs = protocol.ladder(image, slot, rng, cfg.ladder_rungs, cfg.ladder_clean)
            if len(rungs) > 1:
                ladders.append(list(range(len(versions), len(versions) + len(rungs))))
            versions.extend(rungs)
            continue
        versions.append(data.version(image, source, slot, rng))
    return versions_batch(data, versions, rng, ladders)


def training_loss(data: Data, out: torch.Tensor, batch: Batch) -> torch.Tensor:
    """The training loss (see the module docstring)."""
    out = out.float()
    if not data.defects:
        return nn.functional.mse_loss(out[:, 0], batch.score)
    us = batch.is_us
    n_us = us.sum().clamp(min=1.0)
    # heavier at low labels (--low-score-weight K): 1 at label 100, 1 + K at label 0
    label = (batch.score * data.target_scale / 100.0).clamp(0.0, 1.0)
    emphasis = 1.0 + data.cfg.low_score_weight * (1.0 - label)
    mse = (((out[:, 0] - batch.score) ** 2) * us * emphasis).sum() / n_us
    weight = torch.full((batch.defects.shape[1],), data.cfg.defect_pos_weight, device=out.device)
    bce = nn.functional.binary_cross_entropy_with_logits(
        out[:, 1:-1], batch.defects, reduction="none", pos_weight=weight
    ).mean(dim=1)
    gate = nn.functional.binary_cross_entropy_with_logits(out[:, -1], 1.0 - us)
    loss = 10.0 * mse + 2.0 * (bce * us).sum() / n_us + 0.5 * gate
    if batch.pairs is not None and data.cfg.rank_weight > 0:
        rank = ranking_loss(out[:, 0], batch.score, batch.pairs, data.cfg.rank_margin)
        loss = loss + data.cfg.rank_weight * rank
    return loss


def ranking_loss(
    pred: torch.Tensor, score: torch.Tensor, pairs: torch.Tensor, margin: float = 0.5
) -> torch.Tensor:
    """Mean hinge over ladder pairs ``[hi, lo]`` (siblings of one image, ``hi`` labelled
    higher): zero once the higher-labelled version scores above the other by at least
    ``margin`` times their label difference, rising linearly as the order is lost. With
    ``margin`` 1 the labels themselves meet it exactly: it then also asks for the full
    spread between severities that the squared error alone lets shrink towards the mean.

    The squared error alone leaves neighbouring severities of one image free to tie or to
    swap when both are off their labels by the same few points; a severity ladder that is
    to fall strictly needs the difference itself to be learned.
    """
    hi, lo = pairs[:, 0], pairs[:, 1]
    wanted = margin * (score[hi] - score[lo])
    return torch.relu(wanted - (pred[hi] - pred[lo])).mean()


def nonus_images(split: str, n: int, seed: int) -> list[np.ndarray]:
    from model.nonultrasound import sample

    return [item.image for item in sample(split, n, seed)]

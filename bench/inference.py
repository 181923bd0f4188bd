"""In-process measurements: the Scorer alone on preprocessed batches, and the naive
per-file baseline a researcher would write (PIL, torchvision transforms, batch of one in
fp32, one SQLite INSERT and commit per file)."""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ModelRun", "model_only", "naive_baseline"]

log = logging.getLogger(__name__)


@dataclass
class ModelRun:
    """One configuration of the Scorer, timed on preprocessed images."""

    precision: str
    batch_size: int
    threads: int
    frames: int
    seconds: float
    scores: np.ndarray

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "batch_size": self.batch_size,
            "threads": self.threads,
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "frames_per_s": round(self.fps, 2),
        }


def _images(pngs: list[Path]) -> list[np.ndarray]:
    """The files as the pipeline gets them (dicom_io), then the Scorer's own steps 1 and
    2 (grey, resize): uint8 images at the preset size, ready for the forward pass."""
    from dicom_io import ReadOptions, read
    from model import Scorer

    prep = Scorer.load(precision="fp32").checkpoint.preprocess
    opts = ReadOptions()
    out = []
    for path in pngs:
        for _, frame in read(path, opts).iter_frames():
            out.append(prep.image(frame))
    return out


def model_only(
    pngs: list[Path], configs: list[tuple[str, int]], threads: int, min_frames: int
) -> list[ModelRun]:
    """Frames/s of the Scorer's forward (``model.inference.predict_images``: normalise,
    channels_last, batched, optional bf16 autocast) on already preprocessed images, for
    each ``(precision, batch_size)``. Images are cycled up to ``min_frames`` frames."""
    import torch

    from model import Scorer
    from model.inference import predict_images

    torch.set_num_threads(threads)
    base = _images(pngs)
    reps = max(1, -(-min_frames // len(base)))
    images = (base * reps)[: max(len(base), min_frames)]
    runs = []
    for precision, batch_size in configs:
        scorer = Scorer.load(precision=precision, threads=threads, batch_size=batch_size)

        def forward(chunk: list[np.ndarray], s: Scorer = scorer) -> np.ndarray:
            return predict_images(
                s.checkpoint.net,
                chunk,
                s.checkpoint.preprocess,
                s.checkpoint.target_scale,
                batch_size=s.batch_size,
                bf16=s.bf16,
                device=s.device,
            )

        forward(images[:batch_size])  # warm-up: oneDNN picks its kernels
        started = time.perf_counter()
        scores = forward(images)
        seconds = time.perf_counter() - started
        name = "bf16" if scorer.bf16 else "fp32"
        runs.append(ModelRun(name, batch_size, threads, len(images), seconds, scores[: len(base)]))
        log.info("model only %s batch %d: %.1f frames/s", name, batch_size, runs[-1].fps)
    return runs


@dataclass
class NaiveRun:
    files: int
    seconds: float
    scores: np.ndarray

    @property
    def fps(self) -> float:
        return self.files / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "seconds": round(self.seconds, 3),
            "frames_per_s": round(self.fps, 2),
        }


def naive_baseline(pngs: list[Path], database: Path, threads: int) -> NaiveRun:
    """Per file: PIL open, torchvision transforms, a batch of one through the shipped
    network in fp32, one INSERT and commit into SQLite. The model is loaded before the
    clock starts, as a script would at its top."""
    import torch
    from PIL import Image
    from torchvision import transforms

    from model import SHIPPED_WEIGHTS, load_checkpoint

    torch.set_num_threads(threads)
    ckpt = load_checkpoint(SHIPPED_WEIGHTS)
    net = ckpt.net.float().eval()
    prep = ckpt.preprocess
    transform = transforms.Compose(
        [
            transforms.Grayscale(num_output_channels=3),
            transforms.Resize((prep.size, prep.size)),
            transforms.ToTensor(),
            transforms.Normalize(prep.mean, prep.std),
        ]
    )
    conn = sqlite3.connect(database)
    conn.execute("CREATE TABLE scores (path TEXT, score REAL)")
    conn.commit()
    scores = np.empty(len(pngs), dtype=np.float32)
    started = time.perf_counter()
    with torch.no_grad():
        for i, path in enumerate(pngs):
            image = Image.open(path).convert("RGB")
            x = transform(image).unsqueeze(0)
            value = float(net(x).item()) * ckpt.target_scale
            scores[i] = value
            conn.execute("INSERT INTO scores (path, score) VALUES (?, ?)", (str(path), value))
            conn.commit()
    seconds = time.perf_counter() - started
    conn.close()
    return NaiveRun(len(pngs), seconds, scores)

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
    streams: int
    threads: int  # torch threads per stream
    frames: int
    seconds: float
    scores: np.ndarray
    backend: str = "eager"

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def label(self) -> str:
        return (
            f"{self.backend}, {self.precision}, batch {self.batch_size}, "
            f"{self.streams} stream(s) x {self.threads} thread(s)"
        )

    def config(self) -> tuple[str, int, int, str]:
        """``(precision, batch_size, streams, backend)``, as :func:`model_only` takes it."""
        return (self.precision, self.batch_size, self.streams, self.backend)

    def settings(self) -> dict[str, str]:
        """The usqa settings that run the Scorer like this."""
        return {
            "USQA_BACKEND": self.backend,
            "USQA_PRECISION": self.precision,
            "USQA_BATCH_SIZE": str(self.batch_size),
            "USQA_INFERENCE_STREAMS": str(self.streams),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "precision": self.precision,
            "batch_size": self.batch_size,
            "streams": self.streams,
            "threads_per_stream": self.threads,
            "frames": self.frames,
            "seconds": round(self.seconds, 3),
            "frames_per_s": round(self.fps, 2),
        }


def _images(pngs: list[Path]) -> list[np.ndarray]:
    """The files as the pipeline gets them (dicom_io), then the Scorer's own steps 1 and
    2 (grey, resize): uint8 images at the preset size, ready for the forward pass."""
    from dicom_io import ReadOptions, read
    from model.checkpoint import load_checkpoint
    from model.scorer import SHIPPED_WEIGHTS

    prep = load_checkpoint(SHIPPED_WEIGHTS).preprocess
    opts = ReadOptions()
    out = []
    for path in pngs:
        for _, frame in read(path, opts).iter_frames():
            out.append(prep.image(frame))
    return out


def model_only(
    pngs: list[Path], configs: list[tuple[str, int, int, str]], threads: int, min_frames: int
) -> list[ModelRun]:
    """Frames/s of :meth:`model.Scorer.predict` (normalise, channels_last, batched,
    optional bf16 autocast, batches spread over the streams) on already preprocessed
    images, for each ``(precision, batch_size, streams, backend)`` with ``threads`` CPU
    threads shared out between the streams. Images are cycled up to ``min_frames`` frames.
    A compiled Scorer is compiled when it loads, before the clock starts."""
    import torch

    from model import Scorer

    base = _images(pngs)
    reps = max(1, -(-min_frames // len(base)))
    images = (base * reps)[: max(len(base), min_frames)]
    runs = []
    for precision, batch_size, streams, backend in configs:
        scorer = Scorer.load(
            precision=precision,
            threads=threads,
            batch_size=batch_size,
            streams=streams,
            backend=backend,
        )
        try:
            scorer.predict(images[: batch_size * scorer.streams])  # warm-up: kernels chosen
            started = time.perf_counter()
            scores = scorer.predict(images)
            seconds = time.perf_counter() - started
        finally:
            scorer.close()
        run = ModelRun(
            "bf16" if scorer.bf16 else "fp32",
            batch_size,
            scorer.streams,
            torch.get_num_threads(),
            len(images),
            seconds,
            scores[: len(base)],
            backend,
        )
        runs.append(run)
        log.info("model only %s: %.1f frames/s", run.label, run.fps)
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

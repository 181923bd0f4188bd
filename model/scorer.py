"""The batch Scorer: frames in; quality scores 0..100, defect probabilities and the
not-ultrasound probability out (one forward pass, see :mod:`model.network`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from model.checkpoint import Checkpoint, load_checkpoint
from model.inference import forward_images
from model.network import fold_batchnorm
from worker.errors import ConfigError, ModelError

__all__ = [
    "BACKENDS",
    "SHIPPED_WEIGHTS",
    "Assessment",
    "Scorer",
    "ScorerSettings",
    "bf16_supported",
    "plan_streams",
]

log = logging.getLogger(__name__)

SHIPPED_WEIGHTS = Path(__file__).resolve().parent / "weights" / "usqa-resnet18-graded.pt"
BACKENDS = ("eager", "compile")


class ScorerSettings(Protocol):
    """The settings :meth:`Scorer.from_settings` reads (``worker.settings.Settings`` has
    them)."""

    @property
    def weights(self) -> Path | None: ...
    @property
    def device(self) -> str: ...
    @property
    def precision(self) -> str: ...
    @property
    def threads(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def inference_streams(self) -> int: ...
    @property
    def backend(self) -> str: ...


def bf16_supported(device: str) -> bool:
    """Whether ``device`` runs bf16 natively (AVX512-BF16/AMX on CPU, Ampere+ on CUDA)."""
    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclass(frozen=True)
class Assessment:
    """What the model says about N frames."""

    scores: np.ndarray  # (N,) float32, 0..100
    defects: np.ndarray | None  # (N, len(defect_names)) probabilities; None: no defect head
    not_ultrasound: np.ndarray | None  # (N,) probabilities; None: no gate
    defect_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def from_outputs(
        cls, raw: np.ndarray, outputs: Sequence[str], target_scale: float
    ) -> Assessment:
        """Interpret raw head outputs ``(N, len(outputs))``: the score column scaled and
        clamped, the others through a sigmoid."""
        from model.defects import DEFECTS
        from model.network import GATE

        scores = np.clip(raw[:, 0] * target_scale, 0.0, 100.0).astype(np.float32)
        names = tuple(o for o in outputs if o in DEFECTS)
        defects = None
        if names:
            cols = [list(outputs).index(n) for n in names]
            defects = _sigmoid(raw[:, cols])
        gate = _sigmoid(raw[:, list(outputs).index(GATE)]) if GATE in outputs else None
        return cls(scores, defects, gate, names)

    @classmethod
    def concat(cls, parts: Sequence[Assessment]) -> Assessment:
        """One assessment of the frames of ``parts``, in order."""
        first = parts[0]
        return cls(
            np.concatenate([p.scores for p in parts]),
            None if first.defects is None else np.concatenate([p.defects for p in parts]),
            None
            if first.not_ultrasound is None
            else np.concatenate([p.not_ultrasound for p in parts]),
            first.defect_names,
        )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))).astype(np.float32)


MAX_AUTO_STREAMS = 2  # the most measured (2-core machine, docs/performance.md)


def plan_streams(device: str, threads: int, streams: int) -> tuple[int, int]:
    """``(streams, torch threads per stream)`` for a process with ``threads`` CPU threads
    (0: torch's default, the cores). ``streams`` 0 = auto: on CPU, one single-threaded
    stream per thread up to :data:`MAX_AUTO_STREAMS` (threads shared out beyond that); on
    CUDA one stream."""
    total = threads if threads > 0 else torch.get_num_threads()
    total = max(1, total)
    if streams < 0:
        raise ConfigError(f"inference streams {streams}: expected 0 (auto) or more")
    if streams == 0:
        streams = 1 if device.startswith("cuda") else min(total, MAX_AUTO_STREAMS)
    return streams, max(1, total // streams)


class Scorer:
    """Scores frames with one loaded checkpoint. Build it once per process and reuse it.

    ``precision``: ``fp32``, ``bf16`` (autocast) or ``auto`` = bf16 where the hardware
    supports it natively (measured on BUSI test images: scores within 0.5 points of fp32,
    see model/MODEL_CARD.md), else fp32.

    ``streams``: how many batches run side by side, each in its own thread with its share
    of the torch threads. On a CPU, two single-threaded streams score as fast as one
    two-threaded one, and a busy decoder beside them slows one stream instead of stalling
    both at every layer (docs/performance.md).
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        device: str,
        bf16: bool,
        batch_size: int,
        streams: int = 1,
        backend: str = "eager",
    ) -> None:
        self.checkpoint = checkpoint
        self.device = device
        self.bf16 = bf16
        self.batch_size = batch_size
        self.streams = max(1, streams)
        self.backend = backend
        self.net: nn.Module = checkpoint.net
        self.version: str = checkpoint.sha256[:12]
        if backend == "compile":
            from model.compiled import compile_network

            self.net = compile_network(checkpoint.net, batch_size, self._warm_up)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._in_flight = 0  # batches submitted and not finished yet

    @classmethod
    def load(
        cls,
        weights: str | Path | None = None,
        device: str = "cpu",
        precision: str = "auto",
        threads: int = 0,
        batch_size: int = 32,
        fold_bn: bool = True,
        streams: int = 0,
        backend: str = "eager",
    ) -> Scorer:
        """Load ``weights`` (None: the shipped model) for inference. ``fold_bn`` folds each
        BatchNorm into its convolution (same scores, fewer operations). ``threads`` and
        ``streams``: see :func:`plan_streams`; this sets torch's threads for the process.
        ``backend``: ``eager`` (plain torch) or ``compile`` (``torch.compile``, compiled
        here; see :mod:`model.compiled`). Raises ModelError for a bad file or a failed
        compile."""
        if precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"precision {precision!r}: expected auto, fp32 or bf16")
        if backend not in BACKENDS:
            raise ConfigError(f"backend {backend!r}: expected {' or '.join(BACKENDS)}")
        if batch_size < 1:
            raise ConfigError(f"batch size {batch_size}: expected 1 or more")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device {device!r}: no CUDA GPU is available; use cpu")
        streams, per_stream = plan_streams(device, threads, streams)
        torch.set_num_threads(per_stream)
        path = Path(weights) if weights is not None else SHIPPED_WEIGHTS
        if weights is None and not path.is_file():
            raise ModelError(
                f"{path}: the shipped model weights are missing from this installation; "
                "reinstall usqa or set USQA_WEIGHTS to a checkpoint"
            )
        checkpoint = load_checkpoint(path, device=device)
        if fold_bn:
            fold_batchnorm(checkpoint.net)
        checkpoint.net.to(memory_format=torch.channels_last)
        bf16 = precision == "bf16" or (precision == "auto" and bf16_supported(device))
        log.info(
            "loaded model %s from %s (%s, %s, %s, %d stream(s) x %d thread(s))",
            checkpoint.sha256[:12],
            path.name,
            device,
            "bf16" if bf16 else "fp32",
            backend,
            streams,
            per_stream,
        )
        return cls(checkpoint, device, bf16, batch_size, streams, backend)

    @classmethod
    def from_settings(cls, settings: ScorerSettings) -> Scorer:
        """Read ``weights``, ``device``, ``precision``, ``threads``, ``batch_size`` and
        ``inference_streams``."""
        return cls.load(
            weights=settings.weights,
            device=settings.device,
            precision=settings.precision,
            threads=settings.threads,
            batch_size=settings.batch_size,
            streams=settings.inference_streams,
            backend=settings.backend,
        )

    @property
    def metadata(self) -> dict[str, Any]:
        """The checkpoint's metadata (protocol, training command, metrics, ...)."""
        return self.checkpoint.meta

    @property
    def defect_names(self) -> tuple[str, ...]:
        """The defects this model names (empty for a score-only checkpoint)."""
        return self.checkpoint.defect_names

    def predict(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Scores of uint8 grey images already at the preset size (``Preprocess.image``)."""
        return self.assess_images(images).scores

    def assess_images(self, images: Sequence[np.ndarray]) -> Assessment:
        """:class:`Assessment` of images already at the preset size, in batches of
        ``batch_size`` spread over the streams."""
        if len(images) == 0:
            return self._empty()
        chunks = [images[i : i + self.batch_size] for i in range(0, len(images), self.batch_size)]
        if self.streams == 1 or len(chunks) == 1:
            return self._forward(images)
        pool = self._executor()
        return Assessment.concat(
            [f.result() for f in [pool.submit(self._forward, c) for c in chunks]]
        )

    def score_frames(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """A float32 score 0..100 per frame (uint8 ``(H, W)`` or ``(H, W, 3)``, any size)."""
        return self.assess(frames).scores

    def assess(self, frames: Sequence[np.ndarray]) -> Assessment:
        """Scores, defect probabilities and not-ultrasound probabilities of frames of any
        size (uint8 ``(H, W)`` or ``(H, W, 3)``)."""
        if len(frames) == 0:
            return self._empty()
        prep = self.checkpoint.preprocess
        return self.assess_images([prep.image(f) for f in frames])

    def submit(self, frames: Sequence[np.ndarray]) -> Future[Assessment]:
        """:meth:`assess` for one batch in a stream thread; at most ``streams`` run at
        once, later ones wait their turn. The future raises what scoring raised."""
        prep = self.checkpoint.preprocess

        def score() -> Assessment:
            try:
                return self._forward([prep.image(f) for f in frames])
            finally:
                with self._pool_lock:
                    self._in_flight -= 1

        pool = self._executor()
        with self._pool_lock:
            self._in_flight += 1
        try:
            return pool.submit(score)
        except BaseException:
            with self._pool_lock:
                self._in_flight -= 1
            raise

    def _empty(self) -> Assessment:
        raw = np.empty((0, len(self.checkpoint.outputs)), dtype=np.float32)
        return Assessment.from_outputs(raw, self.checkpoint.outputs, self.checkpoint.target_scale)

    @property
    def idle_streams(self) -> int:
        """Streams with nothing to do: neither scoring a batch nor with one waiting for them
        (whoever submitted it)."""
        with self._pool_lock:
            return max(0, self.streams - self._in_flight)

    def close(self) -> None:
        """Stop the stream threads (after the batches in hand)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=self.streams, thread_name_prefix="usqa-inference"
                )
            return self._pool

    def _warm_up(self, net: nn.Module, n: int) -> None:
        from model.compiled import blank_images

        forward_images(
            net,
            blank_images(n, self.checkpoint.preprocess.size),
            self.checkpoint.preprocess,
            batch_size=n,
            bf16=self.bf16,
            device=self.device,
        )

    def _forward(self, images: Sequence[np.ndarray]) -> Assessment:
        raw = forward_images(
            self.net,
            images,
            self.checkpoint.preprocess,
            batch_size=self.batch_size,
            bf16=self.bf16,
            device=self.device,
        )
        return Assessment.from_outputs(raw, self.checkpoint.outputs, self.checkpoint.target_scale)

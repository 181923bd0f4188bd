"""The ``compile`` backend: the network through ``torch.compile`` (TorchInductor).

The batch dimension is compiled as dynamic, so a part-filled batch (the end of a burst, a
batch started early while the decoder catches up) runs at its own size without a recompile
or padding; a single frame gets its own specialised graph. Both are compiled when the
scoring process starts, not on the first scan: tens of seconds the first time, a few once
TorchInductor's cache (``/tmp/torchinductor_<user>`` by default) holds the kernels. Needs a
C++ compiler (gcc or clang) on the machine. Scores match eager torch within rounding
(docs/performance.md)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import cast

import numpy as np
import torch
from torch import nn

from dicom_io.messages import first_line
from worker.errors import ModelError

__all__ = ["blank_images", "compile_network"]

log = logging.getLogger(__name__)


def compile_network(
    net: nn.Module, batch_size: int, warm_up: Callable[[nn.Module, int], object]
) -> nn.Module:
    """``net`` compiled for any batch size up to ``batch_size``. ``warm_up(module, n)`` must
    score one batch of ``n`` frames exactly as scoring will (same grad mode and autocast),
    so the compiled code is built here. Raises ModelError when TorchInductor cannot compile
    (no C++ compiler, say)."""
    compiled = cast(nn.Module, torch.compile(net, dynamic=True))
    sizes = sorted({batch_size, 1}, reverse=True)
    started = time.monotonic()
    try:
        with torch.compiler.set_stance("default"):
            for size in sizes:
                warm_up(compiled, size)
    except Exception as exc:
        raise ModelError(
            f"USQA_BACKEND=compile: torch.compile could not build the network "
            f"({first_line(exc)}). It needs a C++ compiler (gcc or clang) on "
            "this machine; or use USQA_BACKEND=eager"
        ) from exc
    log.info("compiled the network in %.1f s", time.monotonic() - started)
    # From now on nothing compiles: a call the compiled code does not cover runs eagerly
    # (the same scores) instead of compiling in a stream thread, where TorchInductor is
    # slow and, beside a second stream, was once seen to hang. Process-wide: the next
    # compile_network compiles under its own "default" stance.
    torch.compiler.set_stance("eager_on_recompile")
    return compiled


def blank_images(n: int, size: int) -> list[np.ndarray]:
    """``n`` mid-grey uint8 images of ``size`` x ``size`` (warm-up input)."""
    return [np.full((size, size), 128, dtype=np.uint8) for _ in range(n)]

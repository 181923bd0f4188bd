"""The decoder child process (``python -m worker.decoding.child``): reads files with
:func:`dicom_io.read` and decodes their frames, one request at a time from stdin, replies
on stdout (see :mod:`worker.decoding.protocol`). Each request's ``op`` names one entry of
:data:`OPERATIONS`; every failure becomes an error reply and the loop goes on."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from dicom_io import ReadOptions, Scan, ScanHeader, read
from worker.decoding.protocol import error_reply, recv_blocking, send
from worker.decoding.sandbox import limit_memory
from worker.errors import InputError

__all__ = ["OPERATIONS", "main"]

log = logging.getLogger(__name__)


def _die_with_parent() -> None:
    """Ask Linux to kill this process when the parent dies (best effort)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return


def _preparer(preset: dict[str, Any] | None) -> Callable[[np.ndarray], np.ndarray] | None:
    """``Preprocess.image`` of the model's preset (imported without torch), or None."""
    if not preset:
        return None
    from model.preprocess import Preprocess

    return Preprocess.from_dict(preset).image


def _lower_priority(steps: int) -> None:
    """Give up ``steps`` of scheduling priority (best effort)."""
    if steps > 0:
        with contextlib.suppress(OSError, AttributeError):
            os.nice(steps)


def _warm_up() -> None:
    """Load what the first file would otherwise wait for (the PNG/JPEG codecs, the border
    heuristic's scipy modules): a few hundred milliseconds, spent before any file arrives."""
    import io

    from PIL import Image

    from dicom_io.borders import find_box

    frame = np.zeros((64, 64, 3), dtype=np.uint8)
    frame[8:56, 8:56] = 120
    for fmt in ("PNG", "JPEG"):
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format=fmt)
        buffer.seek(0)
        with Image.open(buffer) as im:
            im.load()
    find_box([frame])


@dataclass
class _State:
    """What the child holds between requests."""

    out: IO[bytes]
    options: ReadOptions | None = None
    prepare: Callable[[np.ndarray], np.ndarray] | None = None
    scan: Scan | None = None
    path: str = ""


def _init(state: _State, request: dict[str, Any]) -> None:
    """Settings from the parent: logging, read options, the model's preset, priority and
    memory limit; then warm up and say ``ready``."""
    from worker.logs import configure_logging

    configure_logging(*request.get("log", ("text", "WARNING")))
    raw = dict(request["options"])
    raw["modalities"] = tuple(raw.get("modalities") or ())
    state.options = ReadOptions(**raw)
    state.prepare = _preparer(request.get("preprocess"))
    _lower_priority(int(request.get("nice") or 0))
    limit_memory(int(request.get("memory_mib") or 0))
    try:
        _warm_up()
    except Exception as exc:  # only a head start: the first file still works
        log.debug("decoder warm-up skipped: %s", exc)
    send(state.out, {"type": "ready"})


def _preprocess(state: _State, request: dict[str, Any]) -> None:
    state.prepare = _preparer(request.get("preprocess"))


def _open(state: _State, request: dict[str, Any]) -> None:
    """Read a file's header and reply with it; with ``frames``, stream its frames too."""
    state.scan = None
    state.path = str(request["path"])
    scan = state.scan = read(request["path"], state.options)
    send(state.out, {"type": "header", **ScanHeader.of(scan).to_dict()})
    if request.get("frames") and not scan.skip_reason:
        _frames(state, request)  # asked for with the header: no second request


def _frames(state: _State, _request: dict[str, Any]) -> None:
    """Decode the open file's selected frames, one reply each, then ``done``."""
    scan = state.scan
    if scan is None:
        raise InputError("no file is open in the decoder")
    for index, frame in scan.iter_frames():
        if state.prepare is not None:
            frame = state.prepare(frame)
        array = np.ascontiguousarray(frame, dtype=np.uint8)
        send(
            state.out,
            {"type": "frame", "index": int(index), "shape": list(array.shape)},
            array.tobytes(),
        )
    crop = scan.crop
    send(state.out, {"type": "done", "crop": None if crop is None else crop.as_dict()})
    state.scan = None


OPERATIONS: dict[str, Callable[[_State, dict[str, Any]], None]] = {
    "init": _init,
    "preprocess": _preprocess,
    "open": _open,
    "frames": _frames,
}


def main() -> int:
    """The child's loop: one request at a time from stdin, replies on stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    _die_with_parent()
    if os.getppid() == 1:
        return 0
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but replies may reach the pipe
    state = _State(stdout)
    while True:
        try:
            request, _ = recv_blocking(stdin)
        except (EOFError, OSError, ValueError):
            return 0
        operation = OPERATIONS.get(str(request.get("op")))
        if operation is None:  # no reply: the parent is not waiting for one
            log.debug("decoder: unknown request ignored")
            continue
        try:
            operation(state, request)
        except Exception as exc:  # every failure becomes a reply; the loop goes on
            state.scan = None
            try:
                send(stdout, error_reply(exc, state.path))
            except (BrokenPipeError, OSError):
                return 0


if __name__ == "__main__":
    raise SystemExit(main())

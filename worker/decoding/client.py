"""Decoding in a child process, so that a poison file cannot take the worker with it.

A file that makes a codec hang or crash (a damaged JPEG 2000 stream, a hostile header, a
file on a network share that stops answering) must cost one failed scan, not a worker. The
:class:`Decoder` runs :func:`dicom_io.read` and ``Scan.iter_frames`` in a long-lived child
process (``python -m worker.decoding.child``) and talks to it over its stdin/stdout pipes:

* each file has ``USQA_DECODE_TIMEOUT`` seconds for its header and frames together; past
  that the child is killed and :class:`~worker.errors.DecodeTimeoutError` is raised;
* if the child dies (a segfault in a codec, the out-of-memory killer),
  :class:`~worker.errors.DecoderCrashedError` is raised and a fresh child is started for
  the next file;
* errors the reader raises on purpose (:class:`~worker.errors.InputError`,
  :class:`~worker.errors.SkipScan`) come back as the same classes with the same message.

It works the same in the embedded runner and inside Celery pool processes (which may not
use :mod:`multiprocessing` children). Frames cross the pipe as raw uint8 bytes with a JSON
header; nothing is unpickled.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import numpy as np

from dicom_io.metadata import pseudonymise
from dicom_io.record import ScanHeader
from worker.decoding.protocol import HEAD, MAX_JSON, rebuild_error, send, widen_pipe
from worker.decoding.sandbox import decoder_environment
from worker.errors import CorruptFileError, DecoderCrashedError, DecodeTimeoutError

__all__ = ["Decoder", "read_options"]

log = logging.getLogger(__name__)

_READ_BYTES = 64 << 10  # a read of the pipe asks for at least this much
_START_LIMIT = 120.0  # the most a child may take to start (imports, warm-up), not a file's


def read_options(settings: Any) -> dict[str, Any]:
    """The :class:`dicom_io.ReadOptions` fields for ``settings``, as JSON-safe values."""
    from dicom_io import ReadOptions

    options = asdict(ReadOptions.from_settings(settings))
    options["modalities"] = list(options["modalities"])
    return options


# --- the parent side --------------------------------------------------------------------


class Decoder:
    """A decoding child process, started on first use and restarted after a crash or a
    timeout. Use from one thread at a time (:meth:`abort` excepted); :meth:`close` when
    done."""

    def __init__(
        self,
        options: dict[str, Any],
        timeout: float,
        log: tuple[str, str] = ("text", "WARNING"),
        nice: int = 0,
        memory_mib: int = 0,
    ) -> None:
        # the salt stays here: the child gets the identifiers' texts out, and the parent
        # pseudonymises them (a subverted child has no salt to give away)
        self.salt: str | None = options.get("pseudonym_salt")
        self.options = {**options, "pseudonym_salt": None, "keep_identifiers": True}
        self.nice = nice
        self.memory_mib = int(memory_mib)
        # the most pixel bytes one frame may announce: the frame limit, 4 samples of 1 byte
        self.max_frame_bytes = int(options.get("max_pixels") or 100_000_000) * 4
        self.timeout = float(timeout)
        self.log = log
        self._proc: subprocess.Popen[bytes] | None = None
        self._deadline = 0.0
        self._path = ""
        self._busy = False  # a reply stream is not finished: the pipe is out of step
        self._starting = False  # the child has not said it is ready yet
        self._streaming = False  # the open file's frames follow its header unasked
        self._buffer = bytearray()  # read from the pipe, not consumed yet
        self.last_crop: dict[str, Any] | None = None
        self.preprocess: dict[str, Any] | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> Decoder:
        return cls(
            read_options(settings),
            settings.decode_timeout,
            (settings.log_format, "WARNING"),
            settings.decoder_nice,
            settings.decoder_memory,
        )

    # -- process management --

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self) -> None:
        """Start the child now (otherwise the first file starts it)."""
        if self._proc is not None and self._proc.poll() is None:
            return
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "worker.decoding.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # its warnings go to our stderr
            close_fds=True,
            env=decoder_environment(),
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._buffer.clear()
        os.set_blocking(self._proc.stdout.fileno(), False)
        widen_pipe(self._proc.stdout.fileno())
        send(
            self._proc.stdin,
            {
                "op": "init",
                "options": self.options,
                "log": list(self.log),
                "preprocess": self.preprocess,
                "nice": self.nice,
                "memory_mib": self.memory_mib,
            },
        )
        self._starting = True
        log.debug("decoder process %d started", self._proc.pid)

    def _await_ready(self) -> None:
        """Wait for the child's ``ready`` (its imports and warm-up, seconds on a busy
        machine): time that belongs to no file's USQA_DECODE_TIMEOUT."""
        limit = max(_START_LIMIT, self.timeout)
        self._deadline = time.monotonic() + limit
        try:
            message, _ = self._recv()
        except DecodeTimeoutError as exc:
            raise DecoderCrashedError(
                f"{self._path}: the decoder process did not start within {limit:g} s"
            ) from exc
        if message.get("type") != "ready":
            self._kill()
            raise CorruptFileError(f"{self._path}: the decoder did not start as expected")
        self._starting = False

    def close(self) -> None:
        """Stop the child (politely, then by force)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout,):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()

    def abort(self) -> None:
        """Kill the child from another thread, so that a read waiting on it ends at once
        (that read then reports a crash, and the next file starts a fresh child)."""
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, OSError):
                proc.kill()

    def _kill(self) -> None:
        self._busy = False
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()

    # -- I/O with a deadline --

    def _crashed(self, proc: subprocess.Popen[bytes]) -> DecoderCrashedError:
        self._busy = False
        try:
            code = proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        self._proc = None
        if code < 0:
            try:
                how = f"was killed by signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with status {code}"
        limit = (
            f" (or needed more than the {self.memory_mib} MiB of USQA_DECODER_MEMORY)"
            if self.memory_mib
            else ""
        )
        return DecoderCrashedError(
            f"{self._path}: the decoder process {how} while reading this file; it may be "
            f"corrupt or hostile{limit}"
        )

    def _timeout(self) -> DecodeTimeoutError:
        self._kill()
        return DecodeTimeoutError(
            f"{self._path}: decoding took longer than {self.timeout:g} s (USQA_DECODE_TIMEOUT); "
            "the file is failed as a poison file; raise the limit if such files are expected"
        )

    def _read_exact(self, proc: subprocess.Popen[bytes], n: int) -> bytes:
        """``n`` bytes from the child, within the file's deadline. Reads what the pipe
        holds (at least what is missing, at least 64 KiB), so a reply's head, JSON and
        pixels usually take one system call together. (Not 1 MiB each time: a buffer that
        large is mapped and unmapped by malloc on every call.)"""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        buffer = self._buffer
        while len(buffer) < n:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise self._timeout()
            try:
                chunk = os.read(fd, max(n - len(buffer), _READ_BYTES))  # non-blocking
            except BlockingIOError:
                if not select.select([fd], [], [], left)[0]:
                    raise self._timeout() from None
                continue
            if not chunk:
                raise self._crashed(proc)
            buffer += chunk
        data = bytes(buffer[:n])
        del buffer[:n]
        return data

    def _recv(self) -> tuple[dict[str, Any], bytes]:
        proc = self._proc
        assert proc is not None
        size, payload_size = HEAD.unpack(self._read_exact(proc, HEAD.size))
        if size > MAX_JSON or payload_size > self.max_frame_bytes:
            self._kill()
            raise CorruptFileError(
                f"{self._path}: the decoder announced a reply of {size} + {payload_size} "
                f"bytes, more than a frame within USQA_MAX_PIXELS may take; refused unread"
            )
        message = json.loads(self._read_exact(proc, size))
        payload = self._read_exact(proc, payload_size) if payload_size else b""
        if message.get("type") in ("header", "done", "error"):
            self._busy = False
        if message.get("type") == "error":
            raise rebuild_error(message)
        return message, payload

    def _request(self, message: dict[str, Any]) -> None:
        self._streaming = False
        if self._busy:  # the last reply was abandoned half-way: start afresh
            self._kill()
        if self._proc is None or self._proc.poll() is not None:
            self._proc = None
            self.start()
        if self._starting:  # the file's budget starts once the child is ready
            budget = self._deadline - time.monotonic()
            self._await_ready()
            self._deadline = time.monotonic() + budget
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        try:
            send(proc.stdin, message)
        except (BrokenPipeError, OSError) as exc:
            raise self._crashed(proc) from exc
        self._busy = True

    # -- the API --

    def set_preprocess(self, preset: dict[str, Any] | None) -> None:
        """Have the child turn each frame into the model's input image (``Preprocess.image``
        of ``preset``: grey, at the model's size) before sending it, so a fraction of the
        bytes crosses the pipe and waits for inference. None: frames as decoded."""
        if preset == self.preprocess:
            return
        self.preprocess = preset
        proc = self._proc
        if proc is None or proc.poll() is not None or proc.stdin is None:
            return  # the next start sends it
        if self._busy:
            self._kill()
            return
        try:
            send(proc.stdin, {"op": "preprocess", "preprocess": preset})
        except (BrokenPipeError, OSError):
            self._kill()

    def open(self, path: str, frames: bool = False) -> ScanHeader:
        """Read and check the header of ``path``. Starts the file's time budget. With
        ``frames``, the child goes on to decode the selected frames straight away (unless
        the header says the file is skipped): call :meth:`frames` next to take them,
        without another round trip."""
        self._path = path
        self._deadline = time.monotonic() + self.timeout
        self._request({"op": "open", "path": path, "frames": frames})
        message, _ = self._recv()
        header = ScanHeader.from_dict(message)
        header.metadata = pseudonymise(header.metadata, self.salt)
        if not header.skip_reason:  # a skipped file's size was never checked
            self._check_header(header)
        self._streaming = frames and not header.skip_reason
        self._busy = self._streaming  # the frames are on their way
        return header

    def _check_header(self, header: ScanHeader) -> None:
        """Refuse a header whose announced size is beyond the limits the child enforces
        (a child that says so has been subverted, or is out of step)."""
        try:
            pixels = int(header.rows) * int(header.columns)
            frames = int(header.frame_count)
        except (TypeError, ValueError):
            pixels = frames = -1
        limit = int(self.options.get("max_pixels") or 0)
        most_frames = int(self.options.get("max_frames") or 0)
        if pixels < 0 or (limit and pixels > limit) or (most_frames and frames > most_frames):
            self._kill()
            raise CorruptFileError(
                f"{self._path}: the decoder announced {header.rows} x {header.columns} pixels "
                f"x {header.frame_count} frames, beyond USQA_MAX_PIXELS / USQA_MAX_FRAMES; "
                "refused"
            )

    def frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """Decode the selected frames of the file just opened, one at a time (same budget),
        preprocessed when :meth:`set_preprocess` asked for it. The crop box, once known, is
        in the ``done`` message; see :attr:`last_crop`.

        The budget counts only the time spent waiting for the child: while the caller
        holds a frame (inference is behind, the read-ahead is full) the clock stops, so a
        long cine on a busy machine is not failed as a poison file."""
        if self._streaming:
            self._streaming = False
        else:
            self._request({"op": "frames"})
        self.last_crop = None
        while True:
            message, payload = self._recv()
            if message.get("type") == "done":
                self.last_crop = message.get("crop")
                return
            frame = self._frame(message, payload)
            held = time.monotonic()
            yield int(message["index"]), frame
            self._deadline += time.monotonic() - held

    def _frame(self, message: dict[str, Any], payload: bytes) -> np.ndarray:
        """The frame the child announced, once its shape (x uint8) is checked against the
        bytes that came and the frame limit; otherwise the child is replaced."""
        try:
            shape = tuple(int(v) for v in message["shape"])
        except (KeyError, TypeError, ValueError):
            shape = ()
        pixels = int(np.prod(shape, dtype=np.int64)) if shape else -1
        channels = shape[2] if len(shape) == 3 else 1
        if (
            len(shape) not in (2, 3)
            or min(shape) <= 0
            or channels > 4
            or pixels != len(payload)
            or pixels > self.max_frame_bytes
        ):
            self._kill()
            raise CorruptFileError(
                f"{self._path}: the decoder announced a frame of shape {list(shape)} (uint8) "
                f"with {len(payload)} bytes of pixels; expected rows x columns [x 1-4 "
                "samples] matching the bytes, within USQA_MAX_PIXELS; the frame is refused"
            )
        return np.frombuffer(payload, dtype=np.uint8).reshape(shape)

"""Decoding in a child process, so that a poison file cannot take the worker with it.

A file that makes a codec hang or crash (a damaged JPEG 2000 stream, a hostile header, a
file on a network share that stops answering) must cost one failed scan, not a worker. The
:class:`Decoder` runs :func:`dicom_io.read` and ``Scan.iter_frames`` in a long-lived child
process (``python -m worker.decoder``) and talks to it over its stdin/stdout pipes:

* each file has ``USQA_DECODE_TIMEOUT`` seconds for its header and frames together; past
  that the child is killed and :class:`~worker.errors.DecodeTimeoutError` is raised;
* if the child dies (a segfault in a codec, the out-of-memory killer),
  :class:`DecoderCrashedError` is raised and a fresh child is started for the next file;
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
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import IO, Any

import numpy as np

from dicom_io.metadata import pseudonymise
from worker import errors
from worker.errors import CorruptFileError, DecodeTimeoutError, InputError, UsqaError
from worker.sandbox import child_environment, limit_memory

__all__ = ["DecodedHeader", "Decoder", "DecoderCrashedError", "read_options"]

log = logging.getLogger(__name__)

_HEAD = struct.Struct("!IQ")  # JSON length, payload length
_MAX_JSON = 8 << 20  # a header's metadata (each sidecar holds at most 1 MiB)
_PIPE_BYTES = 1 << 20  # the unprivileged maximum (/proc/sys/fs/pipe-max-size)
_READ_BYTES = 64 << 10  # a read of the pipe asks for at least this much
_START_LIMIT = 120.0  # the most a child may take to start (imports, warm-up), not a file's


class DecoderCrashedError(CorruptFileError):
    """The decoding child process died while reading this file (a codec crashed, or it ran
    out of memory). Retried up to the attempt cap, because a crash can also be the machine's
    fault; a file that crashes the decoder every time ends ``failed``."""


@dataclass
class DecodedHeader:
    """What the header of one file says (the :class:`dicom_io.Scan` attributes)."""

    kind: str
    rows: int
    columns: int
    frame_count: int
    samples_per_pixel: int
    selected_frames: list[int]
    skip_reason: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    crop: dict[str, Any] | None = None


def read_options(settings: Any) -> dict[str, Any]:
    """The :class:`dicom_io.ReadOptions` fields for ``settings``, as JSON-safe values."""
    from dicom_io import ReadOptions

    options = asdict(ReadOptions.from_settings(settings))
    options["modalities"] = list(options["modalities"])
    return options


# --- framing (both sides) ---------------------------------------------------------------


def _send(stream: IO[bytes], message: dict[str, Any], payload: bytes = b"") -> None:
    body = json.dumps(message, default=str).encode()
    stream.write(_HEAD.pack(len(body), len(payload)))
    stream.write(body)
    if payload:
        stream.write(payload)
    stream.flush()


def _read_exact_blocking(stream: IO[bytes], n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) != n:
        raise EOFError
    return data


def _recv_blocking(stream: IO[bytes]) -> tuple[dict[str, Any], bytes]:
    size, payload_size = _HEAD.unpack(_read_exact_blocking(stream, _HEAD.size))
    message = json.loads(_read_exact_blocking(stream, size))
    payload = _read_exact_blocking(stream, payload_size) if payload_size else b""
    return message, payload


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
            [sys.executable, "-m", "worker.decoder"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # its warnings go to our stderr
            close_fds=True,
            env=_child_env(),
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._buffer.clear()
        os.set_blocking(self._proc.stdout.fileno(), False)
        _widen_pipe(self._proc.stdout.fileno())
        _send(
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
        size, payload_size = _HEAD.unpack(self._read_exact(proc, _HEAD.size))
        if size > _MAX_JSON or payload_size > self.max_frame_bytes:
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
            raise _rebuild_error(message)
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
            _send(proc.stdin, message)
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
            _send(proc.stdin, {"op": "preprocess", "preprocess": preset})
        except (BrokenPipeError, OSError):
            self._kill()

    def open(self, path: str, frames: bool = False) -> DecodedHeader:
        """Read and check the header of ``path``. Starts the file's time budget. With
        ``frames``, the child goes on to decode the selected frames straight away (unless
        the header says the file is skipped): call :meth:`frames` next to take them,
        without another round trip."""
        self._path = path
        self._deadline = time.monotonic() + self.timeout
        self._request({"op": "open", "path": path, "frames": frames})
        message, _ = self._recv()
        fields = {k: message[k] for k in DecodedHeader.__dataclass_fields__ if k in message}
        fields["metadata"] = pseudonymise(fields.get("metadata"), self.salt)
        header = DecodedHeader(**fields)
        if not header.skip_reason:  # a skipped file's size was never checked
            self._check_header(header)
        self._streaming = frames and not header.skip_reason
        self._busy = self._streaming  # the frames are on their way
        return header

    def _check_header(self, header: DecodedHeader) -> None:
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


# glibc hands each freed block over 128 KiB back to the kernel, so every decoded frame and its
# float copies fault in fresh pages: about 0.3 ms of a 2.5 ms PNG. The child keeps them.
_CHILD_MALLOC = {
    "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
    "MALLOC_TRIM_THRESHOLD_": str(64 << 20),
}


# The child decodes one file at a time on one thread. Left alone, numpy's and scipy's
# OpenBLAS each start a thread per core for the grey conversion, threads that spin beside
# the inference streams after every frame.
_CHILD_THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _child_env() -> dict[str, str]:
    """The harmless part of our environment (:func:`worker.sandbox.child_environment`:
    no database URL, broker URL or salt), glibc settings that keep freed frame buffers in
    the child (an operator's own MALLOC_* settings win), and one thread for its numerical
    libraries (always: the operator's thread settings are for inference)."""
    return child_environment({**_CHILD_MALLOC, **os.environ}, _CHILD_THREADS)


def _widen_pipe(fd: int) -> None:
    """Let a whole frame fit in the pipe (Linux: F_SETPIPE_SZ), so the child writes it in
    one go instead of waiting for the parent to read every 64 KiB (best effort)."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_BYTES)
    except (ImportError, OSError):
        return


def _rebuild_error(message: dict[str, Any]) -> UsqaError:
    """The exception the child reported, as the same class from :mod:`worker.errors`."""
    text = str(message.get("message") or "decoding failed")
    cls = getattr(errors, str(message.get("class")), None)
    if isinstance(cls, type) and issubclass(cls, UsqaError):
        return cls(text)
    return CorruptFileError(text)


# --- the child side ---------------------------------------------------------------------


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


def _error_message(exc: BaseException, path: str = "") -> dict[str, Any]:
    if isinstance(exc, UsqaError):
        return {"type": "error", "class": type(exc).__name__, "message": str(exc)}
    where = f"{_printable(path)}: " if path else ""
    if isinstance(exc, MemoryError):
        return {
            "type": "error",
            "class": "LimitExceededError",
            "message": f"{where}decoding ran out of memory (USQA_DECODER_MEMORY); the file may be "
            "a decompression bomb; raise the limit, or lower USQA_MAX_PIXELS or "
            "USQA_MAX_FRAMES",
        }
    first = str(exc).splitlines()[0] if str(exc) else ""
    return {
        "type": "error",
        "class": "CorruptFileError",
        "message": f"{where}could not be decoded ({type(exc).__name__}: {first[:300]})",
    }


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


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


def child_main() -> int:
    """The child's loop: one request at a time from stdin, replies on stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    _die_with_parent()
    if os.getppid() == 1:
        return 0
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but replies may reach the pipe
    from dicom_io import ReadOptions, read

    options: ReadOptions | None = None
    prepare: Callable[[np.ndarray], np.ndarray] | None = None
    scan: Any = None
    path = ""
    while True:
        try:
            request, _ = _recv_blocking(stdin)
        except (EOFError, OSError, ValueError):
            return 0
        op = request.get("op")
        try:
            if op == "init":
                from worker.logs import configure_logging

                configure_logging(*request.get("log", ("text", "WARNING")))
                raw = dict(request["options"])
                raw["modalities"] = tuple(raw.get("modalities") or ())
                options = ReadOptions(**raw)
                prepare = _preparer(request.get("preprocess"))
                _lower_priority(int(request.get("nice") or 0))
                limit_memory(int(request.get("memory_mib") or 0))
                try:
                    _warm_up()
                except Exception as exc:  # only a head start: the first file still works
                    log.debug("decoder warm-up skipped: %s", exc)
                _send(stdout, {"type": "ready"})
                continue
            if op == "preprocess":
                prepare = _preparer(request.get("preprocess"))
                continue
            if op == "open":
                scan = None
                path = str(request["path"])
                scan = read(request["path"], options)
                _send(
                    stdout,
                    {
                        "type": "header",
                        "kind": scan.kind,
                        "rows": scan.rows,
                        "columns": scan.columns,
                        "frame_count": scan.frame_count,
                        "samples_per_pixel": scan.samples_per_pixel,
                        "selected_frames": list(scan.selected_frames),
                        "skip_reason": scan.skip_reason,
                        "metadata": scan.metadata,
                    },
                )
                if request.get("frames") and not scan.skip_reason:
                    op = "frames"  # asked for with the header: no second request
            if op == "frames":
                if scan is None:
                    raise InputError("no file is open in the decoder")
                for index, frame in scan.iter_frames():
                    if prepare is not None:
                        frame = prepare(frame)
                    array = np.ascontiguousarray(frame, dtype=np.uint8)
                    _send(
                        stdout,
                        {"type": "frame", "index": int(index), "shape": list(array.shape)},
                        array.tobytes(),
                    )
                crop = scan.crop
                _send(stdout, {"type": "done", "crop": None if crop is None else crop.as_dict()})
                scan = None
        except Exception as exc:  # every failure becomes a reply; the loop goes on
            scan = None
            try:
                _send(stdout, _error_message(exc, path))
            except (BrokenPipeError, OSError):
                return 0


if __name__ == "__main__":
    raise SystemExit(child_main())

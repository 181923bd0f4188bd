"""The decoder pipe's wire format, used by both sides: each message is a fixed head (JSON
length, payload length), a JSON object and an optional raw payload (a frame's uint8
pixels). Nothing is unpickled. Errors cross as :meth:`worker.errors.UsqaError.to_dict`."""

from __future__ import annotations

import json
import struct
from typing import IO, Any

from dicom_io.messages import first_line, shown
from worker import errors

__all__ = [
    "HEAD",
    "MAX_JSON",
    "error_reply",
    "rebuild_error",
    "recv_blocking",
    "send",
    "widen_pipe",
]

HEAD = struct.Struct("!IQ")  # JSON length, payload length
MAX_JSON = 8 << 20  # a header's metadata (each sidecar holds at most 1 MiB)
_PIPE_BYTES = 1 << 20  # the unprivileged maximum (/proc/sys/fs/pipe-max-size)


def send(stream: IO[bytes], message: dict[str, Any], payload: bytes = b"") -> None:
    body = json.dumps(message, default=str).encode()
    stream.write(HEAD.pack(len(body), len(payload)))
    stream.write(body)
    if payload:
        stream.write(payload)
    stream.flush()


def _read_exact_blocking(stream: IO[bytes], n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) != n:
        raise EOFError
    return data


def recv_blocking(stream: IO[bytes]) -> tuple[dict[str, Any], bytes]:
    """One message from a blocking stream (the child's stdin). Raises EOFError at its end."""
    size, payload_size = HEAD.unpack(_read_exact_blocking(stream, HEAD.size))
    message = json.loads(_read_exact_blocking(stream, size))
    payload = _read_exact_blocking(stream, payload_size) if payload_size else b""
    return message, payload


def widen_pipe(fd: int) -> None:
    """Let a whole frame fit in the pipe (Linux: F_SETPIPE_SZ), so the child writes it in
    one go instead of waiting for the parent to read every 64 KiB (best effort)."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_BYTES)
    except (ImportError, OSError):
        return


def error_reply(exc: BaseException, path: str = "") -> dict[str, Any]:
    """The child's reply for an exception met while serving a request."""
    if isinstance(exc, errors.UsqaError):
        return {"type": "error", **exc.to_dict()}
    where = f"{shown(path)}: " if path else ""
    if isinstance(exc, MemoryError):
        failure: errors.UsqaError = errors.LimitExceededError(
            f"{where}decoding ran out of memory (USQA_DECODER_MEMORY); the file may be a "
            "decompression bomb; raise the limit, or lower USQA_MAX_PIXELS or USQA_MAX_FRAMES",
            setting="USQA_DECODER_MEMORY",
        )
    else:
        failure = errors.CorruptFileError(
            f"{where}could not be decoded ({first_line(exc, limit=300)})"
        )
    return {"type": "error", **failure.to_dict()}


def rebuild_error(message: dict[str, Any]) -> errors.UsqaError:
    """The exception the child reported, as the same class from :mod:`worker.errors`."""
    return errors.from_dict(message)

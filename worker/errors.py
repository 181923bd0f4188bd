"""The one exception tree of usqa.

Every error the project raises on purpose derives from :class:`UsqaError`, so callers can
tell "this file is bad" (never retried, the scan ends ``failed``) from "a server is down"
(retried with backoff) from "the installation is wrong" (an operator must act)::

    UsqaError
    ├── InputError (ValueError)             the file itself is bad; not retried
    │   ├── UnreadableFileError             missing, a directory, no permission, dangling link
    │   ├── UnsupportedFileError            not DICOM/PNG/JPEG, or a codec we cannot decode
    │   ├── CorruptFileError                truncated or inconsistent content
    │   ├── LimitExceededError              over the pixel, frame or size budget
    │   ├── NoPixelDataError                a DICOM object without an image (e.g. a report)
    │   └── DecodeTimeoutError (TimeoutError)   decoding ran past USQA_DECODE_TIMEOUT
    ├── SkipScan                            valid, but policy says not to score (modality, copy)
    ├── RetriedError                        tried again later, never a failure on first sight
    │   ├── ScanRetryError                  this scan alone is retried, up to USQA_MAX_ATTEMPTS
    │   │   └── DecoderCrashedError         the decoder process died reading this file
    │   └── TransientError                  a server is unavailable; retried with backoff
    │       ├── DatabaseUnavailableError
    │       ├── BrokerUnavailableError
    │       └── FileUnavailableError (OSError)  the file's storage did not answer (EIO,
    │                                           ESTALE): its scan is retried, as above
    ├── ModelError                          weights missing, wrong shape or unsafe to load (a
    │                                       scoring batch that meets it is retried)
    ├── ConfigError                         a setting has a value we cannot use (exit 2)
    └── InternalError                       usqa broke its own rule: a bug to report
        └── DisallowedMoveError             a scan status move outside db.ledger's MOVES

Every error carries optional context (``path``: the file; ``setting``: the setting at
fault) and a dict form (:meth:`UsqaError.to_dict`, :func:`from_dict`) in which it crosses
the decoder pipe. Messages follow DESIGN.md: what, where, expected vs actual, and what to
do. Chain the original exception with ``raise ... from exc``.

This module imports nothing of usqa: it is the one ``worker`` module that ``dicom_io``,
``model`` and ``db`` may import (tests/test_layering.py checks it).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BrokerUnavailableError",
    "ConfigError",
    "CorruptFileError",
    "DatabaseUnavailableError",
    "DecodeTimeoutError",
    "DecoderCrashedError",
    "DisallowedMoveError",
    "FileUnavailableError",
    "InputError",
    "InternalError",
    "LimitExceededError",
    "ModelError",
    "NoPixelDataError",
    "RetriedError",
    "ScanRetryError",
    "SkipScan",
    "TransientError",
    "UnreadableFileError",
    "UnsupportedFileError",
    "UsqaError",
    "from_dict",
]


class UsqaError(Exception):
    """Root of every error usqa raises on purpose. ``path`` and ``setting`` (optional) say
    which file or which setting it is about."""

    def __init__(self, *args: Any, path: str | None = None, setting: str | None = None) -> None:
        super().__init__(*args)
        self.path = path
        self.setting = setting

    def to_dict(self) -> dict[str, Any]:
        """The JSON-safe form (class name, message, context); see :func:`from_dict`."""
        return {
            "class": type(self).__name__,
            "message": str(self),
            "path": self.path,
            "setting": self.setting,
        }


class InputError(UsqaError, ValueError):
    """The input file is bad. Retrying will not help; the scan ends ``failed``."""


class UnreadableFileError(InputError):
    """The path cannot be read: missing, a directory, no permission, a dangling link."""


class UnsupportedFileError(InputError):
    """The content is not a kind we read, or uses a codec we cannot decode."""


class CorruptFileError(InputError):
    """The content is truncated or contradicts its own header."""


class LimitExceededError(InputError):
    """The file declares more pixels, frames or bytes than the configured budget."""


class NoPixelDataError(InputError):
    """A DICOM object that holds no image (a structured report, a presentation state)."""


class DecodeTimeoutError(InputError, TimeoutError):
    """Decoding took longer than the configured limit (a poison file)."""


class SkipScan(UsqaError):  # noqa: N818 - a control-flow outcome, not a failure
    """The file is valid but policy says not to score it; the scan ends ``skipped``."""


class RetriedError(UsqaError):
    """The work is tried again later; this is never a permanent failure on first sight."""


class ScanRetryError(RetriedError):
    """This scan is released and tried again later, up to USQA_MAX_ATTEMPTS; the other
    scans of its batch go on."""


class DecoderCrashedError(ScanRetryError):
    """The decoding child process died while reading this file (a codec crashed, or it ran
    out of memory). Retried up to the attempt cap, because a crash can also be the machine's
    fault; a file that crashes the decoder every time ends ``failed``."""


class TransientError(RetriedError):
    """A server we depend on is unavailable. The work is retried with backoff."""


class DatabaseUnavailableError(TransientError):
    """The database cannot be reached or refused the connection."""


class BrokerUnavailableError(TransientError):
    """The message broker cannot be reached."""


class FileUnavailableError(TransientError, OSError):
    """The storage holding a file did not answer (a stalled or failing network share:
    EIO, ESTALE, ETIMEDOUT). Only that scan is retried later; at the attempt cap it fails."""


class ModelError(UsqaError):
    """The model weights are missing, have the wrong shape, or are unsafe to load."""


class ConfigError(UsqaError):
    """A setting has a value usqa cannot use. The operator must fix the configuration."""


class InternalError(UsqaError):
    """usqa asked itself for something its own rules forbid: a bug in usqa, not in a file
    or a setting. Nothing to retry or fix locally; report it."""


class DisallowedMoveError(InternalError):
    """A scan status move outside :data:`db.ledger.transitions.MOVES` was asked for (raised
    before any SQL)."""


def from_dict(data: dict[str, Any]) -> UsqaError:
    """The error :meth:`UsqaError.to_dict` described, as the same class (an unknown class
    name, from a subverted or mismatched decoder, becomes :class:`CorruptFileError`)."""
    text = str(data.get("message") or "decoding failed")
    cls = globals().get(str(data.get("class")))
    if not (isinstance(cls, type) and issubclass(cls, UsqaError)):
        cls = CorruptFileError
    path, setting = data.get("path"), data.get("setting")
    return cls(
        text,
        path=None if path is None else str(path),
        setting=None if setting is None else str(setting),
    )

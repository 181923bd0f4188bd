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
    ├── TransientError                      a server is unavailable; retried with backoff
    │   ├── DatabaseUnavailableError
    │   ├── BrokerUnavailableError
    │   └── FileUnavailableError (OSError)  the file's storage did not answer (EIO, ESTALE)
    ├── ModelError                          weights missing, wrong shape or unsafe to load
    └── ConfigError                         a setting has a value we cannot use (exit 2)

Messages follow DESIGN.md: what, where, expected vs actual, and what to do. Chain the
original exception with ``raise ... from exc``.
"""

from __future__ import annotations

__all__ = [
    "BrokerUnavailableError",
    "ConfigError",
    "CorruptFileError",
    "DatabaseUnavailableError",
    "DecodeTimeoutError",
    "FileUnavailableError",
    "InputError",
    "LimitExceededError",
    "ModelError",
    "NoPixelDataError",
    "SkipScan",
    "TransientError",
    "UnreadableFileError",
    "UnsupportedFileError",
    "UsqaError",
]


class UsqaError(Exception):
    """Root of every error usqa raises on purpose."""


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


class TransientError(UsqaError):
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

"""The reason classes of failed and skipped scans for the metrics (a short fixed set, so the
number of time series stays small), and :func:`reason_class`, which picks one from the
exception that ended a scan. Re-exported by :mod:`worker.ops.metrics`."""

from __future__ import annotations

from worker.errors import (
    CorruptFileError,
    DecoderCrashedError,
    DecodeTimeoutError,
    InputError,
    LimitExceededError,
    NoPixelDataError,
    SkipScan,
    UnreadableFileError,
    UnsupportedFileError,
)

__all__ = ["FAILED_REASONS", "GRADES", "SKIPPED_REASONS", "reason_class"]

FAILED_REASONS = (
    "unreadable",  # missing, no permission, changed or removed before scoring
    "unsupported",  # not DICOM/PNG/JPEG, or a codec we cannot decode
    "corrupt",  # truncated or inconsistent content
    "limit",  # over the pixel, frame or size budget
    "no_pixels",  # a DICOM object without an image
    "decode_timeout",  # decoding ran past USQA_DECODE_TIMEOUT
    "decoder_crash",  # the decoding process died on this file every time
    "attempts",  # transient problems until the attempt cap
    "scoring",  # the model could not score its frames
    "other",
)
SKIPPED_REASONS = ("duplicate", "policy", "not_ultrasound", "other")
GRADES = ("good", "average", "poor")

_INPUT_CLASSES: tuple[tuple[type[BaseException], str], ...] = (
    (DecodeTimeoutError, "decode_timeout"),
    (UnreadableFileError, "unreadable"),
    (UnsupportedFileError, "unsupported"),
    (LimitExceededError, "limit"),
    (NoPixelDataError, "no_pixels"),
    (CorruptFileError, "corrupt"),
)


def reason_class(error: BaseException | None = None, *, status: str = "failed") -> str:
    """The reason class of a terminal outcome, from the exception that caused it."""
    if status == "skipped":
        return "policy" if isinstance(error, SkipScan) else "other"
    if error is None:
        return "other"
    if isinstance(error, DecoderCrashedError):
        return "decoder_crash"
    for cls, name in _INPUT_CLASSES:
        if isinstance(error, cls):
            return name
    if isinstance(error, InputError):
        return "corrupt"
    return "other"

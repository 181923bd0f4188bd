"""Logging: the CLI's set-up (plain text or one JSON object per line), the one outcome
line per scan (:func:`log_outcome`) and an outage logged once (:class:`Outage`).

Library code only calls ``logging.getLogger(__name__)``; handlers are configured here, once,
by the command line. Never log patient names or ids: callers pass pseudonymised values only.

Every line is one line of printable text: in the text format, control characters and bytes
that are not valid UTF-8 in a message (a file name with a newline or an escape sequence)
are escaped by dicom_io.messages.printable; the JSON format escapes them by itself.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dicom_io.messages import printable, shown

__all__ = ["JsonFormatter", "Outage", "TextFormatter", "configure_logging", "log_outcome"]

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is kept.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message``, the message escaped so it stays one printable line;
    a traceback keeps its lines, each escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return printable(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:  # noqa: N802
        return "\n".join(printable(line) for line in super().formatException(ei).split("\n"))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return "\n".join(printable(line) for line in stack_info.split("\n"))


QUIET_LIBRARIES = ("highdicom", "pynetdicom")


def configure_logging(log_format: str = "text", level: str = "INFO") -> None:
    """Send logs to stderr in the chosen format. Safe to call more than once."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The DICOM libraries log every association and every copied header module at INFO:
    # kept for --log-level DEBUG, their warnings and errors always shown.
    chatty = logging.WARNING if root.level > logging.DEBUG else logging.NOTSET
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(chatty)


def log_outcome(
    logger: logging.Logger,
    scan_id: int,
    status: str,
    *,
    reason: str | None = None,
    where: str | None = None,
    file: str | None = None,
    sha256: str | None = None,
    scored: dict[str, Any] | None = None,
) -> None:
    """The one log line of a scan's outcome (scoring, the ingester and the reconciler all
    write it here): ``scan N scored 81.5 (good, 1 frame): a.png`` from ``scored`` (score,
    grade, frames, first_defect and what else is to be kept), else ``scan N failed:
    [where: ]reason``, a warning for ``failed``. The fields (``scan_id``, ``status``,
    ``reason``, ``file``, ``sha256`` and the scored ones) go with the line as ``extra``, so
    the JSON format has them; text is shown printable."""
    extra: dict[str, Any] = {"scan_id": scan_id}
    if file is not None:
        extra["file"] = shown(Path(file).name)
    if sha256 is not None:
        extra["sha256"] = sha256[:12]
    extra["status"] = status
    if scored is not None:
        extra.update(scored)
        frames = extra["frames"]
        logger.info(
            "scan %d scored %.1f (%s, %d frame%s%s): %s",
            scan_id,
            extra["score"],
            extra["grade"],
            frames,
            "" if frames == 1 else "s",
            f", {extra['first_defect']}" if extra.get("first_defect") else "",
            extra.get("file"),
            extra=extra,
        )
        return
    extra["reason"] = None if reason is None else shown(reason)
    level = logging.WARNING if status == "failed" else logging.INFO
    if where is None:
        logger.log(level, "scan %d %s: %s", scan_id, status, extra["reason"], extra=extra)
    else:
        logger.log(
            level, "scan %d %s: %s: %s", scan_id, status, where, extra["reason"], extra=extra
        )


class Outage:
    """A dependency that can fail on every try (the database, a heartbeat file) logged
    once when it starts failing (a warning) and once when it works again (info), never
    at every retry. ``down``: whether the last try failed."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.down = False

    def failed(self, message: str, *args: object) -> None:
        """The try failed: ``message`` is logged if it worked before."""
        if not self.down:
            self.logger.warning(message, *args)
        self.down = True

    def recovered(self, message: str, *args: object) -> None:
        """The try worked: ``message`` is logged if it failed before."""
        if self.down:
            self.logger.info(message, *args)
        self.down = False

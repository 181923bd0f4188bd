"""How :mod:`worker.settings` reads and checks values: the text of a ``USQA_*`` variable
turned into the field's type, and every rule a :class:`~worker.settings.Settings` must keep
(``Literal`` choices, the pseudonym salt, the results address, the review page's sign-in,
ranges and cross-field rules).

Nothing here knows the field list: the caller passes each field's resolved annotation, so
this module imports ``worker.settings`` only for type checking (no import cycle).
"""

from __future__ import annotations

import ipaddress
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

from worker.errors import ConfigError

if TYPE_CHECKING:
    from worker.settings import Settings

__all__ = ["MIN_SALT_BYTES", "SALT_PLACEHOLDERS", "parse_value", "validate"]

# A salt shorter than this is open to brute force over the patient ids it hashes.
MIN_SALT_BYTES = 16
# The placeholders of deploy/usqa.env.example and deploy/k8s/secret.example.yaml.
SALT_PLACEHOLDERS = ("change-me", "changeme")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _optional(kind: Any) -> tuple[Any, bool]:
    """``X`` and whether the annotation was ``X | None``."""
    args = get_args(kind)
    if get_origin(kind) in (Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else Union[tuple(rest)]), True  # noqa: UP007
    return kind, False


def parse_value(name: str, raw: str, annotation: Any) -> Any:
    """Turn the text of ``USQA_<NAME>`` into ``annotation`` (the field's type), or raise
    ConfigError."""
    kind, optional = _optional(annotation)
    text = raw.strip()
    if optional and not text:
        return None
    try:
        if kind is bool:
            low = text.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError(text)
        if kind is int:
            return int(text.replace("_", ""))
        if kind is float:
            return float(text)
        if get_origin(kind) is tuple:
            return tuple(p.strip() for p in text.split(",") if p.strip())
        if kind is Path:
            return Path(text).expanduser()
        return text  # str and Literal choices (checked with the other rules)
    except ValueError as exc:
        what = getattr(kind, "__name__", str(kind))
        raise ConfigError(f"USQA_{name.upper()}={raw!r}: expected a {what} value") from exc


def _check_choices(s: Settings, hints: Mapping[str, Any]) -> None:
    """Every ``Literal`` field holds one of its choices."""
    for name, kind in hints.items():
        if get_origin(kind) is Literal and getattr(s, name) not in get_args(kind):
            choices = get_args(kind)
            listed = ", ".join(map(str, choices[:-1])) + f" or {choices[-1]}"
            raise ConfigError(f"USQA_{name.upper()}={getattr(s, name)!r}: expected {listed}")


def _check_salt(salt: str | None) -> None:
    """Refuse the example placeholder and salts too short to keep patient ids secret."""
    if salt is None:
        return
    if any(word in salt.lower() for word in SALT_PLACEHOLDERS):
        raise ConfigError(
            "USQA_PSEUDONYM_SALT is still the CHANGE-ME placeholder of the example settings: "
            "set it to a long random secret (`openssl rand -hex 32`), the same on every "
            "machine, and keep it in your password safe; or unset it to record no patient ids "
            "and operator names"
        )
    size = len(salt.encode("utf-8"))
    if size < MIN_SALT_BYTES:
        raise ConfigError(
            f"USQA_PSEUDONYM_SALT is {size} bytes long, expected at least {MIN_SALT_BYTES}: "
            "a short salt lets anyone who reads the ledger recover patient ids by trying them "
            "all; set a long random secret (`openssl rand -hex 32`), the same on every machine"
        )


def _check_results_to(value: str | None) -> None:
    """USQA_SEND_RESULTS_TO is ``AE@host:port``."""
    if value is None:
        return
    ae, _, address = value.partition("@")
    host, _, port = address.rpartition(":")
    if not (0 < len(ae.strip()) <= 16 and host and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError(
            f"USQA_SEND_RESULTS_TO={value!r}: expected AE@host:port, the PACS's AE title (1 to "
            "16 characters), its host name or address and its DICOM port, e.g. "
            "PACS@pacs.example.org:104"
        )


# An HTTP header name (RFC 9110 token, kept to letters, digits and hyphens).
_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")


def _check_web(s: Settings) -> None:
    """The review page: proxies are addresses or networks; the single sign-on header is a
    header name and needs the proxies it may come from; some way to sign in remains."""
    for item in s.web_trusted_proxies:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(
                f"USQA_WEB_TRUSTED_PROXIES: {item!r} is not an address or network; expected "
                "e.g. 10.1.0.5,10.2.0.0/24"
            ) from None
    header = s.web_trusted_user_header
    if header is not None:
        if not _HEADER_NAME.fullmatch(header):
            raise ConfigError(
                f"USQA_WEB_TRUSTED_USER_HEADER={header!r}: expected a header name such as "
                "X-Remote-User (letters, digits and hyphens)"
            )
        if not s.web_trusted_proxies:
            raise ConfigError(
                "USQA_WEB_TRUSTED_USER_HEADER needs USQA_WEB_TRUSTED_PROXIES: the addresses of "
                "the reverse proxies that set it (anyone else could send it and be signed in)"
            )
    elif not s.web_login_form:
        raise ConfigError(
            "USQA_WEB_LOGIN_FORM=0 leaves no way to sign in: set USQA_WEB_TRUSTED_USER_HEADER "
            "(single sign-on through the reverse proxy) or turn the password sign-in back on"
        )
    if not (s.web_session_hours > 0 and s.web_idle_minutes > 0):
        raise ConfigError("USQA_WEB_SESSION_HOURS and USQA_WEB_IDLE_MINUTES must be > 0")
    if not 0 <= s.web_port < 65536:
        raise ConfigError("USQA_WEB_PORT must be between 0 and 65535")
    if not s.web_host.strip():
        raise ConfigError("USQA_WEB_HOST must be an address to listen on: 127.0.0.1 or 0.0.0.0")


def validate(s: Settings, hints: Mapping[str, Any]) -> None:
    """Every rule, checked once, whatever set the value (environment, flag or code).
    ``hints``: each field's resolved annotation (``typing.get_type_hints(Settings)``)."""
    _check_salt(s.pseudonym_salt)
    _check_results_to(s.send_results_to)
    _check_web(s)
    _check_choices(s, hints)
    checks = [
        (s.max_pixels > 0 and s.max_frames > 0 and s.max_samples > 0, "input limits must be > 0"),
        (s.max_file_bytes > 0, "USQA_MAX_FILE_BYTES must be > 0"),
        (s.frames_to_score >= 0, "USQA_FRAMES_TO_SCORE must be 0 (all) or a positive number"),
        (
            0 <= s.average_threshold <= s.good_threshold <= 100,
            "need 0 <= USQA_AVERAGE_THRESHOLD <= USQA_GOOD_THRESHOLD <= 100",
        ),
        (0 < s.defect_threshold <= 1, "USQA_DEFECT_THRESHOLD must be above 0 and at most 1"),
        (
            0 < s.not_ultrasound_threshold <= 1,
            "USQA_NOT_ULTRASOUND_THRESHOLD must be above 0 and at most 1",
        ),
        (
            bool(s.metrics_address.strip()),
            "USQA_METRICS_ADDRESS must be an address to listen on: 127.0.0.1, 0.0.0.0 or ::",
        ),
        (
            s.batch_size > 0 and s.files_per_task > 0 and s.max_attempts > 0,
            "batch sizes and attempt caps must be > 0",
        ),
        (s.inference_streams >= 0, "USQA_INFERENCE_STREAMS must be 0 (auto) or more"),
        (0 <= s.dicom_port < 65536, "USQA_DICOM_PORT must be between 0 and 65535"),
        (
            0 < len(s.dicom_ae_title.strip()) <= 16,
            "USQA_DICOM_AE_TITLE must be 1 to 16 characters",
        ),
        (s.dicom_max_associations > 0, "USQA_DICOM_MAX_ASSOCIATIONS must be > 0"),
        (
            (s.dicom_tls_cert is None) == (s.dicom_tls_key is None),
            "USQA_DICOM_TLS_CERT and USQA_DICOM_TLS_KEY go together: set both or neither",
        ),
        (0 <= s.decoder_nice <= 19, "USQA_DECODER_NICE must be between 0 and 19"),
        (
            s.decoder_memory == 0 or s.decoder_memory >= 256,
            "USQA_DECODER_MEMORY must be 0 or >= 256 MiB",
        ),
        (s.decode_timeout > 0 and s.stable_seconds >= 0, "time limits must be positive"),
        (
            s.heartbeat_seconds > 0 and s.linger_seconds >= 0 and s.rescan_seconds > 0,
            "USQA_HEARTBEAT_SECONDS and USQA_RESCAN_SECONDS must be > 0",
        ),
        (
            0 < s.task_time_limit < s.visibility_timeout,
            "USQA_VISIBILITY_TIMEOUT must exceed USQA_TASK_TIME_LIMIT (a running task would be "
            "handed to a second worker)",
        ),
        (
            s.task_time_limit < s.stuck_seconds,
            "USQA_STUCK_SECONDS must exceed USQA_TASK_TIME_LIMIT (a running task would be "
            "re-queued)",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)

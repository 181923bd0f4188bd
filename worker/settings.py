"""The one typed settings object, built once per process by :func:`load_settings`.

Precedence: CLI flag > ``USQA_*`` environment variable > default. Nothing here is read at
import time. Each field documents itself (``help``) so the README table and ``usqa
settings`` stay in step with the code. Turning text into typed values and the rules every
value must keep live in :mod:`worker.settings_rules`.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any, Literal

from worker.errors import ConfigError
from worker.settings_rules import MIN_SALT_BYTES as MIN_SALT_BYTES
from worker.settings_rules import SALT_PLACEHOLDERS as SALT_PLACEHOLDERS
from worker.settings_rules import parse_value, validate

__all__ = ["Settings", "load_settings", "setting_docs"]


def _opt(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True)
class Settings:
    """Every knob of usqa. Environment variable = ``USQA_`` + the field name in capitals."""

    # --- storage and transport -------------------------------------------------------
    database_url: str = _opt(
        "sqlite:///usqa.db",
        "SQLAlchemy URL of the ledger. Default: an SQLite file in the working directory. "
        "Production: postgresql+psycopg://user@host/db",
    )
    broker_url: str | None = _opt(
        None,
        "Celery broker URL (redis://host:6379/0). Unset means embedded mode: no broker, "
        "scans are scored in-process by `usqa run`.",
    )

    # --- input limits and reading (dicom_io) ---------------------------------------------
    max_pixels: int = _opt(
        100_000_000, "Largest frame accepted, rows x columns (pixels). Checked before decoding."
    )
    max_frames: int = _opt(5_000, "Largest number of frames accepted in one file.")
    max_samples: int = _opt(
        2_000_000_000,
        "Largest whole image accepted: rows x columns x frames x samples per pixel.",
    )
    frames_to_score: int = _opt(
        16,
        "Frames scored per cine loop, evenly spaced. 0 means every frame.",
    )
    modalities: tuple[str, ...] = _opt(
        ("US",), "DICOM modalities that are scored (comma separated); others are skipped."
    )
    pseudonym_salt: str | None = _opt(
        None,
        "Secret salt for pseudonymising patient ids and operator names (HMAC-SHA256). "
        "Unset: those fields are not recorded at all. Use the same value on every machine. "
        "At least 16 bytes (`openssl rand -hex 32`); the CHANGE-ME placeholder of the "
        "examples is refused. The ledger keeps a fingerprint of it (never the salt) and "
        "scoring processes warn at start when theirs differs.",
        secret=True,
    )
    crop: bool = _opt(True, "Crop frames to the B-mode region before scoring.")
    decode_timeout: float = _opt(
        60.0, "Seconds one file may take to decode before it is failed as a poison file."
    )
    decoder_memory: int = _opt(
        4096,
        "Address space each decoder process may use (MiB; RLIMIT_AS). A file whose decoding "
        "needs more (a decompression or image bomb) is failed with that reason. The default "
        "fits the largest frames USQA_MAX_PIXELS admits; 0 = no limit.",
    )
    decoder_nice: int = _opt(
        0,
        "Scheduling priority the decoder processes give up (nice, 0-19). 0 = the same as the "
        "worker (as fast or faster in the latest measurements, Intel Xeon and AMD EPYC); 10 "
        "lets decoding use only what inference leaves (docs/performance.md).",
    )

    # --- model and scoring (model) -----------------------------------------------------
    weights: Path | None = _opt(  # noqa: RUF009 - field() factory, value is immutable
        None, "Model weights file. Unset: the weights shipped in the package."
    )
    good_threshold: float = _opt(80.0, "Scores at or above this are graded good.")
    average_threshold: float = _opt(
        45.0, "Scores at or above this (and below good) are graded average; below, poor."
    )
    aggregate: Literal["mean", "min", "p10"] = _opt(
        "mean", "How frame scores make the scan's grade: mean, min or p10."
    )
    defect_threshold: float = _opt(
        0.5,
        "A defect is named when its probability (a scan: the mean over its scored frames) is "
        "at least this (0-1).",
    )
    not_ultrasound_threshold: float = _opt(
        0.5,
        "A scan whose mean not-ultrasound probability is above this is recorded skipped as "
        "not an ultrasound image (worksheets, charts, photographs, CT/MR exports); 1 = never.",
    )
    batch_size: int = _opt(
        8,
        "Frames per inference batch (per stream). 8 scored fastest on CPU "
        "(docs/performance.md); on a GPU use 64 or more.",
    )
    precision: Literal["auto", "fp32", "bf16"] = _opt(
        "auto", "Inference precision: auto, fp32 or bf16 (bf16 autocast on CPUs that support it)."
    )
    threads: int = _opt(
        0,
        "Torch threads per scoring process. 0 = the CPU cores "
        "(`usqa worker --concurrency N`: cores / N each).",
    )
    inference_streams: int = _opt(
        0,
        "Inference batches run side by side in one scoring process, each with its share of "
        "USQA_THREADS. 0 = auto: on CPU one single-threaded stream per thread, at most 2 "
        "(threads shared out beyond that); on CUDA 1.",
    )
    device: str = _opt("cpu", "Torch device for inference: cpu or cuda.")
    backend: Literal["eager", "compile"] = _opt(
        "eager",
        "How the network runs: eager (plain torch) or compile (torch.compile: faster on "
        "CPU; each scoring process compiles when it starts, a few seconds once cached, up to "
        "about 30 s the first time; needs a C++ compiler).",
    )

    # --- ingest (worker) -------------------------------------------------------------
    stable_seconds: float = _opt(
        2.0, "A file is taken once its size and mtime have not changed for this long."
    )
    settle_on_close: bool = _opt(
        True,
        "Take a file at once when inotify reports it closed after writing, or renamed into the "
        "drop folder, instead of waiting USQA_STABLE_SECONDS (inotify only; turn off for "
        "writers that close and reopen a file while still writing it).",
    )
    rescan_seconds: float = _opt(
        300.0, "Full rescan of the drop folder every this many seconds (catches missed events)."
    )
    polling: bool = _opt(
        False, "Poll the drop folder instead of inotify (needed on NFS/SMB network shares)."
    )
    max_file_bytes: int = _opt(
        4 * 1024**3,
        "Largest file the ingester takes (bytes; default 4 GiB). Checked before the file is "
        "read or hashed: a larger one (or a sparse file claiming that size) is recorded failed "
        "at once with the reason.",
    )
    after_scoring: Literal["keep", "move", "delete"] = _opt(
        "keep", "What to do with a file once it has a terminal row: keep, move or delete."
    )
    files_per_task: int = _opt(
        8,
        "Most files one task carries (inference batches across them). `usqa run` merges "
        "waiting files into batches of up to 64 files, or this many if larger.",
    )
    linger_seconds: float = _opt(0.2, "Longest wait to fill a task with more files.")
    max_attempts: int = _opt(5, "Attempts before a scan that keeps failing transiently is failed.")
    stuck_seconds: float = _opt(
        1200.0,
        "A scan queued or processing for longer than this is re-queued by the reconciler. "
        "Must exceed USQA_TASK_TIME_LIMIT.",
    )
    task_time_limit: float = _opt(
        900.0,
        "Longest one task (a batch of files) may run on a `usqa worker`; past it the pool "
        "process is replaced and the scans are retried.",
    )
    visibility_timeout: float = _opt(
        3600.0,
        "Seconds Redis waits before giving an unacknowledged task (its worker died) to another "
        "worker. Must exceed USQA_TASK_TIME_LIMIT.",
    )
    heartbeat_seconds: float = _opt(
        10.0,
        "How often each scoring process records that it is alive. One silent for three times "
        "this long is presumed dead and its scans are handed to another.",
    )
    alert_wait_seconds: float = _opt(
        900.0, "`usqa status` exits non-zero when a scan has waited longer than this."
    )

    # --- DICOM listener (worker/listener/) ------------------------------------------------
    dicom_port: int = _opt(
        11112,
        "TCP port of the DICOM listener (`usqa listen`, `usqa run --listen`); 0 = any free port.",
    )
    dicom_address: str = _opt(
        "0.0.0.0", "Address the DICOM listener binds: 0.0.0.0 (or ::) = every interface."
    )
    dicom_ae_title: str = _opt("USQA", "The listener's own AE title (what senders call).")
    dicom_allowed_aes: tuple[str, ...] = _opt(
        (), "Calling AE titles allowed to associate (comma separated); empty: any."
    )
    dicom_allowed_addresses: tuple[str, ...] = _opt(
        (),
        "Addresses or networks (CIDR, comma separated: 10.1.0.0/16,192.168.4.7) allowed to "
        "connect to the listener; empty: any. Others are closed before association.",
    )
    dicom_max_associations: int = _opt(
        10, "Associations the listener serves at once; more are rejected as transient."
    )
    dicom_tls_cert: Path | None = _opt(  # noqa: RUF009 - field() factory, value is immutable
        None, "PEM certificate for DICOM over TLS (with USQA_DICOM_TLS_KEY). Unset: plain TCP."
    )
    dicom_tls_key: Path | None = _opt(  # noqa: RUF009 - field() factory, value is immutable
        None, "PEM private key of USQA_DICOM_TLS_CERT."
    )

    # --- results back (worker/results/) -------------------------------------------------
    send_results_to: str | None = _opt(
        None,
        "Send a DICOM structured report (SR) of each scored DICOM scan to this PACS by C-STORE: "
        "AE@host:port (e.g. PACS@pacs.example.org:104), calling as USQA_DICOM_AE_TITLE. Unset: "
        "none sent. Delivered by `usqa run` or `usqa ingest`, retried with backoff.",
    )
    results_dir: Path | None = _opt(  # noqa: RUF009 - field() factory, value is immutable
        None,
        "Also (or instead) write each SR as a file into this folder (written atomically: "
        "a temporary name, then renamed). Unset: no files.",
    )

    # --- review page (usqa serve, worker/web/; docs/reviews.md) ----------------------------
    web_host: str = _opt(
        "127.0.0.1",
        "Address the review page (`usqa serve`) listens on: 127.0.0.1 = this machine only, "
        "behind the hospital's reverse proxy; 0.0.0.0 (or ::) = every interface (containers).",
    )
    web_port: int = _opt(8080, "TCP port of the review page; 0 = any free port (logged).")
    web_trusted_proxies: tuple[str, ...] = _opt(
        (),
        "Reverse proxies (addresses or networks, comma separated: 10.1.0.5,10.2.0.0/24) whose "
        "X-Forwarded-For and X-Forwarded-Proto the review page believes, so the audit trail "
        "records the real client addresses; and the only peers whose "
        "USQA_WEB_TRUSTED_USER_HEADER is honoured. Empty: none.",
    )
    web_trusted_user_header: str | None = _opt(
        None,
        "Single sign-on: the request header in which the reverse proxy sends the signed-in "
        "user's account name (e.g. X-Remote-User). Honoured only from USQA_WEB_TRUSTED_PROXIES "
        "(required with it); the account must exist (`usqa user add`) and be enabled. "
        "Unset: sign-in by password only.",
    )
    web_login_form: bool = _opt(
        True,
        "Whether the review page offers its own sign-in form (name and password). Turn off "
        "(0) when every user signs in through USQA_WEB_TRUSTED_USER_HEADER.",
    )
    web_session_hours: float = _opt(
        12.0, "A review page sign-in lasts at most this many hours, used or not."
    )
    web_idle_minutes: float = _opt(
        60.0, "A review page sign-in ends after this many minutes without a request."
    )
    web_insecure_cookies: bool = _opt(
        False,
        "Send the review page's cookies without the Secure flag, so that they work over plain "
        "http. Only for trying it out on this machine (http://127.0.0.1) and for tests; never "
        "behind a proxy that serves other machines.",
    )

    # --- logging -----------------------------------------------------------------------
    log_format: Literal["text", "json"] = _opt("text", "Log format: text or json.")
    log_level: str = _opt("INFO", "Log level: DEBUG, INFO, WARNING or ERROR.")

    # --- monitoring (worker/ops/metrics.py, worker/ops/health.py) ------------------------------
    metrics_port: int = _opt(
        0,
        "Port of the Prometheus metrics endpoint (http://host:PORT/metrics) of `usqa run`, "
        "`usqa ingest` and `usqa worker`. 0 = off. Each process on one machine needs its own.",
    )
    metrics_address: str = _opt(
        "127.0.0.1",
        "Address the metrics endpoint listens on: 127.0.0.1 = this machine only; 0.0.0.0 "
        "(or ::) = every interface, for a Prometheus on another machine (the container "
        "image sets 0.0.0.0; limit who may connect with a firewall or NetworkPolicy).",
    )
    heartbeat_file: str | None = _opt(
        None,
        "File the running process rewrites every USQA_HEARTBEAT_SECONDS so that `usqa health` "
        "can tell it is alive and not stuck. Unset: no heartbeat file.",
    )

    # --- derived values: one home each ------------------------------------------------

    @property
    def dead_after_seconds(self) -> float:
        """Seconds of heartbeat silence after which a scoring process is presumed dead."""
        return 3.0 * float(self.heartbeat_seconds)

    @property
    def lost_grace_seconds(self) -> float:
        """How long a ``queued`` scan may wait while the broker queue is known to be empty."""
        return max(2.0, 2.0 * float(self.heartbeat_seconds))

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields replaced (values already typed)."""
        return dataclasses.replace(self, **changes)


@cache
def _types() -> dict[str, Any]:
    """Each field's annotation, resolved (not its string form)."""
    return typing.get_type_hints(Settings)


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings: ``overrides`` (CLI flags, typed; None values ignored) beat
    ``USQA_*`` variables in ``environ`` (default ``os.environ``), which beat defaults."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(Settings):
        key = f"USQA_{f.name.upper()}"
        if key in env:
            values[f.name] = parse_value(f.name, env[key], _types()[f.name])
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = value
    unknown = set(values) - {f.name for f in fields(Settings)}
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
    settings = Settings(**values)
    validate(settings, _types())
    return settings


def setting_docs() -> list[tuple[str, str, str]]:
    """(environment variable, default, help) for every setting, for docs and ``--help``."""
    rows = []
    for f in fields(Settings):
        default = f.default
        shown = ",".join(default) if isinstance(default, tuple) else str(default)
        rows.append(
            (
                f"USQA_{f.name.upper()}",
                "unset" if default is None else shown,
                str(f.metadata["help"]),
            )
        )
    return rows

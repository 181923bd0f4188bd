"""Prometheus metrics of the ingester and the workers, served over HTTP on
``USQA_METRICS_PORT`` (0 = off).

What is counted (every name starts with ``usqa_``)::

    scans_received_total                 files the ingester recorded in the ledger
    scans_scored_total{grade}            scans that got a score (good / average / poor)
    scans_failed_total{reason}           scans that ended failed, by reason class
    scans_skipped_total{reason}          scans that ended skipped, by reason class
    queue_depth                          scans in the ledger still waiting (queued)
    scan_latency_seconds                 histogram: received -> terminal row
    inference_seconds                    histogram: model time per inference batch
    frames_scored_total                  frames through the model
    model_info{version}                  1 for the model version a process scores with
    quality_alerts{kind,dimension,group,defect}  1 per drift alert (worker.ops.quality)
    probe_fault_share{station,transducer,defect} share of a suspected probe fault's scans

Processes. ``usqa run`` and ``usqa ingest`` are one process each: the metrics live in that
process and :func:`serve` starts a small HTTP server thread. ``usqa worker`` runs a Celery
prefork pool: the scans are scored in pool *children*, which cannot share memory with the
parent. There :func:`serve` (called in the parent before the pool forks) switches
prometheus_client to its multiprocess mode: every process writes its values to memory-mapped
files in a private directory (``PROMETHEUS_MULTIPROC_DIR``, emptied at start), and the HTTP
server in the parent adds them up on each scrape. Counters and histograms of children that
were replaced keep counting; ``model_info`` reports the highest value of any process.

Hooks are cheap and never raise: a metrics problem must not fail a scan.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from worker.errors import ConfigError
from worker.ops.reasons import FAILED_REASONS, GRADES, SKIPPED_REASONS, reason_class

__all__ = [
    "FAILED_REASONS",
    "SKIPPED_REASONS",
    "inference_done",
    "ledger_queue_depth",
    "metrics",
    "model_loaded",
    "reason_class",
    "scan_finished",
    "scan_received",
    "serve",
    "set_queue_depth",
    "watch_queue_depth",
]

log = logging.getLogger(__name__)

# Seconds: from a fraction of a second (embedded, idle) to an hour (a large backlog).
LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
INFERENCE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass
class _Metrics:
    received: Any
    scored: Any
    failed: Any
    skipped: Any
    queue_depth: Any
    latency: Any
    inference: Any
    frames: Any
    model_info: Any
    registry: Any


_lock = threading.Lock()
_metrics: _Metrics | None = None
_server: Any = None
_multiprocess_dir: str | None = None
_queue_thread: threading.Thread | None = None
_queue_reader: Callable[[], int] | None = None
_queue_stop = threading.Event()


def _build() -> _Metrics:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    registry = CollectorRegistry(auto_describe=True)
    m = _Metrics(
        received=Counter(
            "usqa_scans_received",
            "Files recorded in the ledger by the ingester.",
            registry=registry,
        ),
        scored=Counter(
            "usqa_scans_scored", "Scans that got a score, by grade.", ["grade"], registry=registry
        ),
        failed=Counter(
            "usqa_scans_failed",
            "Scans that ended failed, by reason class.",
            ["reason"],
            registry=registry,
        ),
        skipped=Counter(
            "usqa_scans_skipped",
            "Scans that ended skipped, by reason class.",
            ["reason"],
            registry=registry,
        ),
        queue_depth=Gauge(
            "usqa_queue_depth",
            "Scans in the ledger waiting to be scored (status queued).",
            registry=registry,
            multiprocess_mode="max",
        ),
        latency=Histogram(
            "usqa_scan_latency_seconds",
            "Seconds from a scan's ledger row being created to its terminal row.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        inference=Histogram(
            "usqa_inference_seconds",
            "Seconds of model time per inference batch.",
            buckets=INFERENCE_BUCKETS,
            registry=registry,
        ),
        frames=Counter("usqa_frames_scored", "Frames scored by the model.", registry=registry),
        model_info=Gauge(
            "usqa_model_info",
            "1 for the model version (weights sha256 prefix) in use.",
            ["version"],
            registry=registry,
            multiprocess_mode="max",
        ),
        registry=registry,
    )
    # Known label values start at 0, so sums and rates exist before the first event.
    for grade in GRADES:
        m.scored.labels(grade=grade)
    for reason in FAILED_REASONS:
        m.failed.labels(reason=reason)
    for reason in SKIPPED_REASONS:
        m.skipped.labels(reason=reason)
    from worker.ops.quality import register  # late: quality builds on this module

    register(registry)  # the ledger's quality alerts, on the same registry
    from worker.ops import results_metrics  # late: it builds on this module

    results_metrics.register(registry)  # the results outbox, on the same registry
    return m


def metrics() -> _Metrics:
    """The metric objects of this process, built on first use."""
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = _build()
    return _metrics


def _guard(fn: Callable[..., None]) -> Callable[..., None]:
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception:  # a metric must never fail a scan
            log.debug("metrics hook %s failed", fn.__name__, exc_info=True)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


@_guard
def scan_received(count: int = 1) -> None:
    """The ingester recorded ``count`` new scans."""
    if count > 0:
        metrics().received.inc(count)


@_guard
def scan_finished(
    status: str,
    *,
    grade: str | None = None,
    reason: str | None = None,
    received_at: datetime | None = None,
    finished_at: datetime | None = None,
) -> None:
    """A scan reached its terminal row: ``scored`` (with ``grade``), ``failed`` or
    ``skipped`` (with a ``reason`` class from :func:`reason_class`)."""
    m = metrics()
    if status == "scored":
        m.scored.labels(grade=grade if grade in GRADES else "poor").inc()
    elif status == "failed":
        m.failed.labels(reason=reason if reason in FAILED_REASONS else "other").inc()
    elif status == "skipped":
        m.skipped.labels(reason=reason if reason in SKIPPED_REASONS else "other").inc()
    else:
        return
    if received_at is not None:
        end = finished_at or datetime.now(UTC)
        m.latency.observe(max(0.0, (end - received_at).total_seconds()))


@_guard
def inference_done(seconds: float, frames: int) -> None:
    """One inference batch of ``frames`` frames took ``seconds``."""
    m = metrics()
    m.inference.observe(max(0.0, seconds))
    m.frames.inc(max(0, frames))


@_guard
def model_loaded(version: str) -> None:
    """This process scores with model ``version``."""
    metrics().model_info.labels(version=version).set(1)


@_guard
def set_queue_depth(depth: int) -> None:
    """Scans waiting in the ledger."""
    metrics().queue_depth.set(max(0, depth))


def watch_queue_depth(read_depth: Callable[[], int], every: float = 15.0) -> None:
    """Refresh ``usqa_queue_depth`` from ``read_depth()`` every ``every`` seconds in a daemon
    thread (the ingester's or the embedded runner's); a later call replaces the reader. A
    failing read keeps the last value. :func:`shutdown` stops the thread."""
    global _queue_thread, _queue_reader

    def loop() -> None:
        while True:
            reader = _queue_reader
            if reader is not None:
                try:
                    set_queue_depth(int(reader()))
                except Exception as exc:  # the database may be away for a while
                    log.debug("queue depth not read: %s", exc)
            if _queue_stop.wait(every):
                return

    with _lock:
        _queue_reader = read_depth
        if _queue_thread is not None and _queue_thread.is_alive():
            return
        _queue_stop.clear()
        _queue_thread = threading.Thread(target=loop, name="usqa-queue-depth", daemon=True)
        _queue_thread.start()


def ledger_queue_depth(database_url: str) -> int:
    """Scans in the ledger with status ``queued`` (the value of ``usqa_queue_depth``)."""
    import db
    from db import ledger

    with db.session_scope(database_url, readonly=True) as session:
        return ledger.queued_count(session)


def _enable_multiprocess() -> str:
    """Point prometheus_client at a fresh private directory for per-process value files.
    Must run before any metric is created and before the pool forks."""
    global _multiprocess_dir
    from prometheus_client import values

    if _metrics is not None:
        raise ConfigError("metrics were created before multiprocess mode was enabled")
    existing = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if existing:
        path = existing
        Path(path).mkdir(parents=True, exist_ok=True)
        for entry in Path(path).glob("*.db"):  # values of an earlier run must not be added in
            entry.unlink()
    else:
        path = tempfile.mkdtemp(prefix="usqa-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    # prometheus_client chose its value class at import; choose again now the variable is set.
    values.ValueClass = values.get_value_class()
    _multiprocess_dir = path
    return path


def serve(port: int, *, multiprocess: bool = False, addr: str = "0.0.0.0") -> int:
    """Start the HTTP endpoint (``/metrics``) on ``port``; 0 means off. With
    ``multiprocess`` the endpoint adds up the values of every process forked after this call.
    Returns the port served (0 when off). Raises ConfigError when the port cannot be bound."""
    global _server
    if port <= 0:
        return 0
    if port > 65535:
        raise ConfigError(f"USQA_METRICS_PORT={port}: not a TCP port (1 to 65535, or 0 for off)")
    from prometheus_client import CollectorRegistry, start_http_server

    _stop_server()  # one endpoint per process: a second call replaces the first
    if multiprocess:
        from prometheus_client import multiprocess as mp

        _enable_multiprocess()
        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)
    else:
        registry = metrics().registry
    try:
        _server = start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"USQA_METRICS_PORT={port}: cannot serve metrics on {addr}:{port} ({exc.strerror}); "
            "pick a free port, or 0 to turn metrics off"
        ) from exc
    log.info("metrics on http://%s:%d/metrics", addr, port)
    return port


def mark_process_dead(pid: int) -> None:
    """A pool child ended: drop its live-gauge files (multiprocess mode only)."""
    if _multiprocess_dir is None:
        return
    try:
        from prometheus_client import multiprocess as mp

        mp.mark_process_dead(pid, _multiprocess_dir)
    except Exception:
        log.debug("could not mark process %d dead for metrics", pid, exc_info=True)


def _stop_server() -> None:
    global _server
    if _server is None:
        return
    server = _server[0] if isinstance(_server, tuple) else _server
    try:
        server.shutdown()
        server.server_close()
    except Exception:
        log.debug("metrics server did not stop cleanly", exc_info=True)
    _server = None


def shutdown() -> None:
    """Stop the HTTP server and the queue-depth thread; remove a private multiprocess dir."""
    global _multiprocess_dir, _queue_thread, _queue_reader
    _queue_stop.set()
    if _queue_thread is not None:
        _queue_thread.join(timeout=5)
    _queue_thread = None
    _queue_reader = None
    _stop_server()
    from worker.ops.quality import stop  # late: quality builds on this module

    stop()
    if _multiprocess_dir is not None and _multiprocess_dir.startswith(tempfile.gettempdir()):
        shutil.rmtree(_multiprocess_dir, ignore_errors=True)
    _multiprocess_dir = None

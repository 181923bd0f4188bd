"""The long-running services behind ``usqa run`` and ``usqa ingest``, and their signal
handling (the commands' shared options are in worker/commands/options.py)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import db
from db import ledger
from db.session import shown_url
from worker.errors import ConfigError
from worker.ops import metrics
from worker.ops.health import HeartbeatFile, beating
from worker.salt import check_salt_at_start
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.ingest import Ingester
    from worker.transport.embedded import Runner

__all__ = [
    "require_broker",
    "run_embedded",
    "run_ingester",
    "start_scaled",
    "stop_signals",
]

log = logging.getLogger(__name__)

# `usqa run` keeps two batches in hand, each with its decoder child: while one starts or
# finishes (decoding its first file, scoring its last frames, writing), the other keeps
# the inference streams busy (docs/performance.md)
EMBEDDED_BATCHES = 2


def _exit_now() -> None:
    """Leave at once, without waiting for inference threads (which cannot be interrupted).
    The scans in hand stay ``processing`` and are taken up again once this process's
    heartbeat is seen to have stopped."""
    log.warning("stopping at once: the scans in hand will be scored again")
    logging.shutdown()
    os._exit(130)


@contextmanager
def stop_signals(on_second: Callable[[], None] | None = None) -> Iterator[threading.Event]:
    """An event set by the first SIGTERM or SIGINT (finish the work in hand, then exit);
    a second signal calls ``on_second`` (default: KeyboardInterrupt) to stop at once."""
    stop = threading.Event()
    previous: dict[signal.Signals, Any] = {}

    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            if on_second is not None:
                on_second()
            raise KeyboardInterrupt
        log.info(
            "%s received: finishing the batch in hand, then stopping (send it again to stop "
            "at once)",
            signal.Signals(signum).name,
        )
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _active_under(settings: Settings, root: str) -> int:
    with db.session_scope(settings.database_url, readonly=True) as session:
        return ledger.active_under(session, root)


def _failed_since(settings: Settings, root: str, since: datetime) -> int:
    with db.session_scope(settings.database_url, readonly=True) as session:
        return ledger.failed_under(session, root, since)


def run_embedded(
    root: Path, settings: Settings, *, once: bool = False, listen: bool = False
) -> int:
    """``usqa run``: ingester and in-process runner in one process (no broker).

    With ``once``: take what is in the folder, score it, and return when every file has its
    outcome. Returns 1 if a file failed during a ``once`` run, else 0. With ``listen``: the
    DICOM listener (worker/listener/) receives into the folder and hands its scans to the
    runner."""
    from worker.ingest import Ingester
    from worker.scoring import ScoringContext
    from worker.transport.embedded import Runner

    _prepare_embedded(settings)
    started = ledger.utcnow()
    pipeline = ScoringContext(settings, mode="embedded", batches=EMBEDDED_BATCHES)
    pipeline.load()  # fail now, not on the first file, if the model cannot load
    _serve_metrics(settings)
    heartbeat = HeartbeatFile.from_settings(settings, "run")
    runner = Runner(pipeline)
    ingester = Ingester(
        root,
        settings,
        runner.submit,
        reconcile_send=runner.submit,
        transport_empty=lambda: runner.idle,
        linger=0.0,  # the runner merges whatever waits into its next batch
        batch=runner.size,
    )
    with stop_signals(on_second=_exit_now) as stop:
        pipeline.start()
        runner.start()
        results = _start_results(settings)
        listener = _start_listener(ingester.root, settings, runner.submit) if listen else None
        try:
            _resume_queued(settings, runner.submit)
            log.info(
                "usqa run: scoring in this process with model %s, ledger %s",
                pipeline.model_version,
                shown_url(settings.database_url),
            )
            ingester.run(
                stop,
                until_idle=beating(
                    heartbeat,
                    _finished(settings, ingester, runner) if once else None,
                    busy_since=lambda: runner.busy_since,
                    done=lambda: pipeline.scans_done,
                ),
            )
        finally:
            if listener is not None:
                listener.stop()
            runner.stop()
            results.stop(final_pass=once)
            pipeline.close()
            if heartbeat is not None:
                heartbeat.remove()
    return _once_outcome(settings, ingester, started) if once else 0


def _start_listener(root: str, settings: Settings, send: Callable[[list[int]], None]) -> Any:
    """The DICOM listener of ``usqa run --listen``, started (before the queued scans are
    resumed: it first moves in what a crash left recorded but not renamed)."""
    from worker.listener import Listener

    listener = Listener(root, settings, send)
    listener.start()
    return listener


def _start_results(settings: Settings) -> Any:
    """The delivery loop of the results outbox (worker/results/outbox.py), started; it
    does nothing without USQA_SEND_RESULTS_TO or USQA_RESULTS_DIR."""
    from worker.results.outbox import Deliverer

    deliverer = Deliverer(settings)
    deliverer.start()
    return deliverer


def _prepare_embedded(settings: Settings) -> None:
    """Warn about a broker that ``usqa run`` does not use; bring the ledger up to date."""
    if settings.broker_url:
        log.warning(
            "USQA_BROKER_URL is set, but `usqa run` scores in this process; use `usqa ingest` "
            "and `usqa worker` for the scaled mode"
        )
    db.upgrade(settings.database_url)
    check_salt_at_start(settings)


def require_broker(settings: Settings, command: str, instead: str) -> None:
    """ConfigError unless a broker is set: ``usqa COMMAND`` needs one (``instead``: what to
    run without one)."""
    if not settings.broker_url:
        raise ConfigError(
            f"`usqa {command}` needs a broker: set USQA_BROKER_URL (e.g. redis://host:6379/0), "
            f"or use {instead}"
        )


def start_scaled(settings: Settings, command: str, instead: str) -> HeartbeatFile | None:
    """What ``usqa ingest`` and ``usqa listen`` do first: insist on a broker and on the
    ledger's current schema, and serve the metrics; the heartbeat file of ``command`` (None:
    none set)."""
    require_broker(settings, command, instead)
    db.require_current(settings.database_url)
    _serve_metrics(settings)
    return HeartbeatFile.from_settings(settings, command)


def _serve_metrics(settings: Settings) -> None:
    if metrics.serve(settings.metrics_port, addr=settings.metrics_address):
        metrics.watch_queue_depth(lambda: metrics.ledger_queue_depth(settings.database_url))
        from worker.ops import quality  # the ledger's quality alerts as gauges

        quality.watch_quality_alerts(settings.database_url)


def _resume_queued(settings: Settings, submit: Callable[[list[int]], None]) -> None:
    """Send the scans left ``queued`` by the last stop, then re-queue the lost ones."""
    from worker.ingest.reconciler import reconcile

    with db.session_scope(settings.database_url, readonly=True) as session:
        waiting = ledger.queued_ids(session)
    size = max(1, settings.files_per_task)
    for i in range(0, len(waiting), size):
        submit(waiting[i : i + size])
    if waiting:
        log.info("resuming %d scan(s) queued before the last stop", len(waiting))
    reconcile(settings, submit)


def _finished(settings: Settings, ingester: Ingester, runner: Runner) -> Callable[[], bool]:
    """For ``once``: whether every file in the folder has its outcome (and is disposed of)."""

    def finished() -> bool:
        return (
            ingester.idle
            and runner.idle
            and _active_under(settings, ingester.root) == 0
            and (settings.after_scoring == "keep" or not _pending_disposal(settings, ingester.root))
        )

    return finished


def _once_outcome(settings: Settings, ingester: Ingester, started: datetime) -> int:
    """Log what a ``once`` run recorded and failed; 1 if a file failed, else 0."""
    failed = _failed_since(settings, ingester.root, started)
    log.info("done: %d file(s) recorded in this run, %d failed", ingester.recorded, failed)
    return 1 if failed else 0


def _pending_disposal(settings: Settings, root: str) -> bool:
    with db.session_scope(settings.database_url, readonly=True) as session:
        # a file whose report waits (the PACS is down) is deleted by a later run
        return bool(ledger.pending_disposal(session, root, limit=1, after_reports=True))


def run_ingester(root: Path, settings: Settings) -> int:
    """``usqa ingest``: watch the folder, record files, send their ids to the broker, and
    reconcile lost scans. Scoring happens in ``usqa worker`` processes."""
    from worker.ingest import Ingester
    from worker.transport.celery_app import queue_depth, send_batch

    heartbeat = start_scaled(settings, "ingest", "`usqa run` to score in one process without one")

    def send(ids: list[int]) -> None:
        send_batch(settings, ids)

    def empty() -> bool:
        depth = queue_depth(settings)
        return depth is not None and depth.total == 0

    ingester = Ingester(root, settings, send, reconcile_send=send, transport_empty=empty)
    with stop_signals() as stop:
        results = _start_results(settings)
        try:
            ingester.run(stop, until_idle=beating(heartbeat, None))
        finally:
            results.stop()
            if heartbeat is not None:
                heartbeat.remove()
    return 0

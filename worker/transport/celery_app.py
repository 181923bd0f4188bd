"""The Celery application of the scaled mode (``usqa ingest`` + ``usqa worker``).

Configuration, and why:

* JSON only, for tasks and results (``accept_content=["json"]``): a message can never make
  a worker unpickle anything. Tasks carry scan ids, never pixels or paths.
* ``acks_late`` + ``reject_on_worker_lost``: a message is acknowledged only after its batch
  is written, and goes back to the queue if the pool process dies mid-batch.
* ``prefetch_multiplier=1``: a worker holds one batch at a time, so a busy worker does not
  sit on work that an idle one could take.
* Redis ``visibility_timeout`` (USQA_VISIBILITY_TIMEOUT) above the task time limit
  (USQA_TASK_TIME_LIMIT): an unacknowledged message is handed to another worker only when
  its worker must be gone.
* Retries as :mod:`worker.scoring.retry` says, the same as the embedded runner: the task calls
  :func:`run_batch`; the attempt cap (USQA_MAX_ATTEMPTS) is counted in the ledger, so it
  holds across retries, redeliveries and reconciler re-sends alike.

Nothing is built at import time: :func:`make_app` builds the app for a Settings object.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from dicom_io.messages import first_line, shown_url
from worker.errors import BrokerUnavailableError
from worker.scoring import retry
from worker.settings import Settings

__all__ = [
    "QUEUE",
    "TASK_NAME",
    "QueueDepth",
    "make_app",
    "queue_depth",
    "run_batch",
    "send_batch",
]

log = logging.getLogger(__name__)

QUEUE = "usqa"
TASK_NAME = "usqa.process_scans"
_PRIORITY_SEP = "\x06\x16"  # kombu's Redis key separator for priority sub-queues

_apps: dict[tuple[str, int], Any] = {}
_pipeline: Any = None
# set by `usqa worker` before the pool forks, and set when the worker begins to shut down:
# every pool process then gives up a file stuck in its decoder (see worker.scoring)
shutting_down: Any = None


def _transport_options(settings: Settings) -> dict[str, Any]:
    return {
        "visibility_timeout": int(settings.visibility_timeout),
        "unacked_restore_interval": max(1, min(10, int(settings.visibility_timeout / 10))),
        "unacked_restore_throttle": 1,
        "socket_connect_timeout": 5,
    }


def make_app(settings: Settings) -> Any:
    """A configured Celery app with the ``usqa.process_scans`` task registered."""
    if not settings.broker_url:
        raise BrokerUnavailableError(
            "no broker configured: set USQA_BROKER_URL (e.g. redis://host:6379/0)"
        )
    from celery import Celery

    app = Celery("usqa", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        result_accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_default_queue=QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        # a pool process loads the model before it reports ready (torch import + weights:
        # a few seconds, more on a busy machine); a model that cannot load is logged and
        # does not hold the start up
        worker_proc_alive_timeout=120.0,
        task_time_limit=float(settings.task_time_limit),
        task_soft_time_limit=max(1.0, float(settings.task_time_limit) * 0.9),
        broker_transport_options=_transport_options(settings),
        broker_connection_retry=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_enable_remote_control=True,
        enable_utc=True,
    )
    _register(app, settings)
    return app


def get_app(settings: Settings) -> Any:
    """The app for ``settings`` in this process (one per broker URL)."""
    key = (str(settings.broker_url), os.getpid())
    app = _apps.get(key)
    if app is None:
        app = _apps[key] = make_app(settings)
    return app


def send_batch(settings: Settings, scan_ids: list[int], countdown: float | None = None) -> None:
    """Queue one batch of scan ids. Raises BrokerUnavailableError if it cannot be sent."""
    from kombu.exceptions import OperationalError

    try:
        get_app(settings).send_task(
            TASK_NAME,
            args=[[int(i) for i in scan_ids]],
            queue=QUEUE,
            countdown=countdown,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
    except (OperationalError, OSError) as exc:
        raise BrokerUnavailableError(
            f"cannot queue scans on the broker ({first_line(exc, kind=False)}); check that "
            "Redis is running and USQA_BROKER_URL is right"
        ) from exc


def worker_pipeline(settings: Settings) -> Any:
    """This pool process's pipeline (built after the fork, on first use)."""
    global _pipeline
    if _pipeline is None or _pipeline.pid != os.getpid():
        from worker.scoring import ScoringContext

        _pipeline = ScoringContext(settings, mode="celery")
        if shutting_down is not None:
            _pipeline.stopping = shutting_down
        _pipeline.start()
    return _pipeline


def run_batch(task: Any, scan_ids: list[int], settings: Settings) -> dict[str, int]:
    """The body of the ``usqa.process_scans`` task (``task``: the bound Celery task):
    score the batch; on an error, retry it as :mod:`worker.scoring.retry` says."""
    from celery.exceptions import SoftTimeLimitExceeded

    from worker.scoring import process_scans

    pipeline = worker_pipeline(settings)
    token = str(task.request.id)
    try:
        result = process_scans(scan_ids, pipeline, token=token, reraise=(SoftTimeLimitExceeded,))
    except Exception as exc:
        again = retry.batch_retry(exc, int(task.request.retries), (SoftTimeLimitExceeded,))
        retry.log_retry(again, len(scan_ids), exc)
        if again.release:
            retry.release_after_error(settings.database_url, scan_ids, token, exc)
        raise task.retry(exc=exc, countdown=again.delay) from exc
    if result.retry:
        try:
            send_batch(
                settings,
                result.retry,
                countdown=retry.scan_retry_delay(int(task.request.retries)),
            )
        except BrokerUnavailableError as exc:
            log.warning("%s; the reconciler re-sends them", exc)
    return {
        status: list(result.statuses.values()).count(status)
        for status in set(result.statuses.values())
    }


def process_scans_task(task: Any, scan_ids: list[int]) -> dict[str, int]:
    """The ``usqa.process_scans`` task (bound: ``task`` is the Celery task; its app holds
    the worker's settings)."""
    return run_batch(task, scan_ids, task.app.usqa_settings)


def _register(app: Any, settings: Settings) -> None:
    app.usqa_settings = settings
    app.task(
        bind=True,
        name=TASK_NAME,
        acks_late=True,
        reject_on_worker_lost=True,
        ignore_result=True,
        max_retries=None,
    )(process_scans_task)

    from celery import signals

    @signals.worker_process_init.connect(weak=False)
    def _init_process(**_: Any) -> None:
        from db import dispose_engines

        dispose_engines()  # never reuse the parent's connections
        try:  # heartbeat, decoder and model now, so the first batch does not wait for them
            pipeline = worker_pipeline(settings)
            pipeline.load()
        except Exception as exc:  # logged; each task tries again and reports it
            log.error("worker process %d could not start: %s", os.getpid(), exc)

    @signals.worker_process_shutdown.connect(weak=False)
    def _stop_process(**_: Any) -> None:
        if _pipeline is not None and _pipeline.pid == os.getpid():
            _pipeline.close()


class QueueDepth:
    """Messages waiting in the broker queue and messages delivered but not acknowledged."""

    def __init__(self, waiting: int, unacked: int) -> None:
        self.waiting = waiting
        self.unacked = unacked

    @property
    def total(self) -> int:
        return self.waiting + self.unacked


def queue_depth(settings: Settings) -> QueueDepth | None:
    """Depth of the usqa queue on a Redis broker (None for other brokers). Raises
    BrokerUnavailableError when Redis cannot be reached."""
    url = settings.broker_url or ""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)
    try:
        keys = [QUEUE] + [f"{QUEUE}{_PRIORITY_SEP}{step}" for step in (3, 6, 9)]
        pipe = client.pipeline()
        for key in keys:
            pipe.llen(key)
        pipe.hlen("unacked")
        *lengths, unacked = pipe.execute()
        return QueueDepth(int(sum(lengths)), int(unacked))
    except (redis.RedisError, OSError) as exc:
        raise BrokerUnavailableError(
            f"cannot reach the broker at {shown_url(url)} ({exc}); check that Redis is running"
        ) from exc
    finally:
        client.close()


def node_name() -> str:
    """A Celery node name unique per process on this machine."""
    return f"usqa-{os.getpid()}@{socket.gethostname()}"

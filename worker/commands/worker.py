"""``usqa worker [--concurrency N]``: a scaled-mode worker. Takes batches of scan ids from
the broker (USQA_BROKER_URL), scores them and writes the results to the database
(USQA_DATABASE_URL). Start as many as needed, on as many machines as needed; each needs the
drop folder mounted at the same path as on the ingester machine.

SIGTERM or Ctrl-C: the batch in hand is finished, then the worker exits; a file stuck in
its decoder is not waited for, its scan goes back to the queue (a second Ctrl-C stops at
once; the batch then goes to another worker).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import db
from worker.commands.options import add_broker_option, add_database_option
from worker.errors import ConfigError, ModelError
from worker.ops import metrics
from worker.ops.health import celery_heartbeat_step
from worker.salt import check_salt_at_start
from worker.service import require_broker
from worker.settings import Settings
from worker.transport import celery_app
from worker.transport.celery_app import QUEUE, make_app, node_name

__all__ = ["add_parser", "pool_threads", "run"]

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "worker",
        help="score scans queued by `usqa ingest` (scaled mode; needs Redis)",
        description="Score the scans that `usqa ingest` queues on the broker "
        "(USQA_BROKER_URL) and write the results to the database (USQA_DATABASE_URL). Run "
        "one or more on each machine; every machine needs the drop folder at the same path.",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=1,
        metavar="N",
        help="scoring processes in this worker, each with its own copy of the model "
        "(default 1; CPU threads are shared out between them unless USQA_THREADS is set)",
    )
    add_database_option(p)
    add_broker_option(p)
    p.add_argument(
        "--weights",
        dest="weights",
        type=Path,
        default=None,
        metavar="FILE",
        help="model checkpoint (USQA_WEIGHTS; default: the shipped model)",
    )
    return p


def _cores() -> int:
    """CPU cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def pool_threads(threads: int, concurrency: int) -> int:
    """Torch threads for each of ``concurrency`` pool processes: ``threads``
    (USQA_THREADS) when set, else this machine's cores shared out between them (at least
    one each), so the pool does not run more compute threads than there are cores."""
    if threads > 0:
        return threads
    return max(1, _cores() // max(1, concurrency))


def _share_shutdown() -> None:
    """An event the pool processes inherit (made before they fork), set when this worker
    begins its warm shutdown (SIGTERM, Ctrl-C): the batches in hand then finish, except
    a file stuck in its decoder, whose scan goes back to the queue, so the worker stops
    within seconds instead of waiting up to USQA_DECODE_TIMEOUT."""
    import multiprocessing

    from celery import signals

    event = multiprocessing.get_context("fork").Event()
    celery_app.shutting_down = event

    @signals.worker_shutting_down.connect(weak=False)
    def _shutting_down(**_: object) -> None:
        event.set()


def run(args: argparse.Namespace, settings: Settings) -> int:
    require_broker(settings, "worker", "`usqa run` to score in one process without one")
    if args.concurrency < 1:
        raise ConfigError(f"--concurrency {args.concurrency}: expected 1 or more")
    if settings.weights is not None and not Path(settings.weights).is_file():
        raise ModelError(f"{settings.weights}: model weights file not found (USQA_WEIGHTS)")
    db.require_current(settings.database_url)
    check_salt_at_start(settings)
    settings = settings.with_overrides(threads=pool_threads(settings.threads, args.concurrency))
    # Before the pool forks: pool processes then count into files that this process serves.
    metrics.serve(settings.metrics_port, multiprocess=True, addr=settings.metrics_address)
    app = make_app(settings)
    _share_shutdown()
    heartbeat_step = celery_heartbeat_step(settings)
    if heartbeat_step is not None:
        app.steps["worker"].add(heartbeat_step)
    worker = app.Worker(
        hostname=node_name(),
        concurrency=args.concurrency,
        pool_cls="prefork",
        queues=[QUEUE],
        loglevel=settings.log_level,
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        optimization="fair",
    )
    log.info(
        "usqa worker: %d scoring process(es), %d thread(s) each, queue %r",
        args.concurrency,
        settings.threads,
        QUEUE,
    )
    worker.start()
    metrics.shutdown()
    return int(worker.exitcode or 0)

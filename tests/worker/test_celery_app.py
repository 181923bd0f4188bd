"""The Celery app's safety settings, and what actually goes over a real Redis."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import redis

from worker.errors import BrokerUnavailableError
from worker.settings import load_settings
from worker.transport.celery_app import QUEUE, TASK_NAME, make_app, queue_depth, send_batch

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(redis_url: str) -> Iterator[str]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()  # the dedicated test database only
    yield redis_url
    client.flushdb()
    client.close()


def test_configuration_is_json_only_late_ack_one_at_a_time(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "broker_url": "redis://127.0.0.1:6379/15",
            "task_time_limit": 100.0,
            "visibility_timeout": 500.0,
            "stuck_seconds": 200.0,
        },
        environ={},
    )
    app = make_app(settings)
    conf = app.conf
    assert conf.task_serializer == "json" and conf.result_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_time_limit == 100.0 and conf.task_soft_time_limit < 100.0
    assert conf.broker_transport_options["visibility_timeout"] == 500
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    assert TASK_NAME in app.tasks


def test_a_batch_on_the_wire_is_plain_json_with_ids_only(broker: str) -> None:
    settings = load_settings({"broker_url": broker}, environ={})
    assert queue_depth(settings).total == 0  # type: ignore[union-attr]
    send_batch(settings, [3, 1, 2])
    depth = queue_depth(settings)
    assert depth is not None and depth.waiting == 1 and depth.unacked == 0
    raw = redis.Redis.from_url(broker).lpop(QUEUE)
    envelope = json.loads(cast(bytes, raw))
    assert envelope["content-type"] == "application/json"
    assert envelope["headers"]["task"] == TASK_NAME
    body = json.loads(base64.b64decode(envelope["body"]))
    assert body[0] == [[3, 1, 2]]  # args: one list of scan ids, nothing else


def test_no_broker_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BrokerUnavailableError, match="USQA_BROKER_URL"):
        make_app(load_settings(environ={}))
    down = load_settings({"broker_url": "redis://127.0.0.1:1/0"}, environ={})
    with pytest.raises(BrokerUnavailableError, match="Redis"):
        queue_depth(down)
    with pytest.raises(BrokerUnavailableError):
        send_batch(down, [1])


def test_pool_processes_share_the_cores_unless_threads_are_set() -> None:
    import os

    from worker.commands.worker import pool_threads

    cores = len(os.sched_getaffinity(0))
    assert pool_threads(0, 1) == cores
    assert pool_threads(0, 2) == max(1, cores // 2)
    assert pool_threads(0, 10 * cores) == 1  # never zero
    assert pool_threads(3, 2) == 3  # USQA_THREADS wins

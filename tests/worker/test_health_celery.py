"""The heartbeat bootstep in a real Celery prefork worker on the real Redis: it beats while
idle, shows the task in hand, and goes stale when the worker's main loop is frozen."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.poll import until
from worker.ops.health import check_heartbeat, read_beat

REPO = Path(__file__).resolve().parents[2]

APP = textwrap.dedent(
    """
    import os, time
    from celery import Celery
    from worker.ops.health import celery_heartbeat_step
    from worker.settings import load_settings

    app = Celery("hbtest", broker=os.environ["USQA_BROKER_URL"], set_as_current=False)
    app.conf.update(
        task_default_queue=os.environ["HB_QUEUE"], accept_content=["json"],
        task_serializer="json", worker_prefetch_multiplier=1, task_acks_late=True,
        worker_hijack_root_logger=False, broker_connection_retry_on_startup=True,
    )
    app.steps["worker"].add(celery_heartbeat_step(load_settings()))

    @app.task(name="hb.sleep")
    def sleep(seconds):
        time.sleep(seconds)
        return seconds
    """
)


def _beat_or_none(path: Path) -> Any:
    try:
        return read_beat(path)
    except (OSError, ValueError):
        return None


@pytest.fixture
def celery_worker(tmp_path: Path, redis_url: str) -> Iterator[tuple[subprocess.Popen, Path, Any]]:
    (tmp_path / "hbapp.py").write_text(APP, encoding="utf-8")
    heartbeat = tmp_path / "run" / "heartbeat.json"
    queue = f"usqa-hbtest-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]),
        "USQA_BROKER_URL": redis_url,
        "USQA_HEARTBEAT_FILE": str(heartbeat),
        "USQA_HEARTBEAT_SECONDS": "1",
        # A task may run 2 s (+ 2 s grace) before the worker counts as stuck.
        "USQA_TASK_TIME_LIMIT": "2",
        "HB_QUEUE": queue,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "hbapp", "worker", "-P", "prefork", "-c", "1",
         "--without-mingle", "--without-gossip", "--without-heartbeat", "-l", "WARNING",
         "-n", f"hb-{uuid.uuid4().hex[:6]}@%h"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    from celery import Celery

    client = Celery("hbclient", broker=redis_url, set_as_current=False)
    client.conf.update(task_serializer="json", accept_content=["json"])
    try:
        yield proc, heartbeat, lambda secs: client.send_task("hb.sleep", args=[secs], queue=queue)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        import redis

        redis.Redis.from_url(redis_url).delete(queue)


@pytest.mark.integration
def test_heartbeat_step_tracks_idle_busy_and_frozen(celery_worker: Any) -> None:
    proc, heartbeat, send = celery_worker
    beat = until(lambda: _beat_or_none(heartbeat), 60, "the first heartbeat", interval=0.1)
    assert beat.role == "worker" and beat.pid == proc.pid and beat.busy_since is None
    assert check_heartbeat(heartbeat).ok

    # A task that overruns its limit: healthy while within it, then stuck (beats still fresh).
    send(7.0)
    busy = until(
        lambda: (
            b if (b := _beat_or_none(heartbeat)) is not None and b.busy_since is not None else None
        ),
        30,
        "a beat showing the task in hand",
        interval=0.1,
    )
    assert busy.busy_limit == pytest.approx(4.0)
    until(
        lambda: "stuck on one task" in check_heartbeat(heartbeat).detail, 15, "stuck", interval=0.1
    )
    done = until(
        lambda: (
            b
            if (b := _beat_or_none(heartbeat)) is not None
            and b.busy_since is None
            and b.scans_done >= 1
            else None
        ),
        30,
        "the task to finish",
        interval=0.1,
    )
    assert done.scans_done == 1
    assert check_heartbeat(heartbeat).ok

    # The `usqa health` command against this worker: healthy with its broker.
    env = {**os.environ, "USQA_HEARTBEAT_FILE": str(heartbeat)}
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "health", "--json"], env=env, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["healthy"], result.stdout + result.stderr

    # Freeze the worker's main process: alive, but its loop no longer turns.
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        until(
            lambda: not check_heartbeat(heartbeat).ok, 10, "the heartbeat to go stale", interval=0.1
        )
        assert "stopped or hangs" in check_heartbeat(heartbeat).detail
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    until(lambda: check_heartbeat(heartbeat).ok, 10, "the heartbeat to come back", interval=0.1)

    # A clean stop removes the heartbeat: a stopped worker is not healthy.
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert not heartbeat.exists()

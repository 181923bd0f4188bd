"""The metrics endpoint after scoring real files: through the embedded runner (`usqa run`)
in this process, and through the scaled pair (`usqa ingest` + `usqa worker --concurrency 2`,
real Redis and PostgreSQL) in child processes, where the pool processes' counts are added up
by the worker's endpoint. Every figure is checked against what was dropped."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from PIL import Image
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

import db
from db.models import Scan
from tests.helpers.poll import until
from worker.ops import metrics
from worker.ops.health import check_heartbeat
from worker.settings import load_settings

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return _parse(response.read().decode("utf-8"))


def _get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def _drop_files(drop: Path) -> None:
    """3 distinct images, 1 copy of one of them, 1 file that is not an image at all."""
    rng = np.random.default_rng(7)
    drop.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        image = (rng.random((96, 128)) * 255).astype(np.uint8)
        Image.fromarray(image).save(drop / f"scan{i}.png")
    shutil.copyfile(drop / "scan0.png", drop / "copy-of-scan0.png")
    (drop / "report.dcm").write_bytes(b"this is a text report, not an image\n" * 20)


def _age_files(drop: Path) -> None:
    """Make the files look finished (older than the stability window)."""
    old = time.time() - 60
    for path in drop.iterdir():
        os.utime(path, (old, old))


def _check_counts(samples: Samples, *, received: bool, scored: bool) -> None:
    if received:
        assert _get(samples, "usqa_scans_received_total") == 5
        assert _get(samples, "usqa_scans_skipped_total", reason="duplicate") == 1
    if scored:
        assert _total(samples, "usqa_scans_scored_total") == 3
        assert _get(samples, "usqa_scans_failed_total", reason="unsupported") == 1
        assert _total(samples, "usqa_scans_failed_total") == 1
        assert _get(samples, "usqa_frames_scored_total") == 3
        # received -> terminal row, for the 3 scored and the 1 failed scan
        assert _get(samples, "usqa_scan_latency_seconds_count") == 4
        assert _get(samples, "usqa_inference_seconds_count") >= 1


def _ledger(url: str) -> list[Scan]:
    with db.session_scope(url, readonly=True) as session:
        return list(session.scalars(select(Scan).order_by(Scan.id)).all())


@pytest.fixture
def metrics_server_stopped() -> Iterator[None]:
    yield
    metrics.shutdown()


@pytest.mark.integration
def test_embedded_runner_metrics_count_what_was_scored(
    tmp_path: Path, random_weights: Path, metrics_server_stopped: None
) -> None:
    from worker.service import run_embedded

    drop = tmp_path / "drop"
    _drop_files(drop)
    _age_files(drop)
    url = f"sqlite:///{tmp_path / 'usqa.db'}"
    port = _unused_port()
    heartbeat = tmp_path / "heartbeat.json"
    settings = load_settings(
        {
            "database_url": url, "weights": random_weights, "metrics_port": port,
            "heartbeat_file": str(heartbeat), "stable_seconds": 0.2, "heartbeat_seconds": 0.5,
            "precision": "fp32", "threads": 1, "files_per_task": 4, "linger_seconds": 0.05,
        },
        environ={},
    )  # fmt: skip
    # Counters live for the whole test process: compare with what they held before.
    before = _parse(generate_latest(metrics.metrics().registry).decode("utf-8"))
    assert run_embedded(drop, settings, once=True) == 1  # one file failed
    after = _scrape(port)
    delta: Samples = {key: value - before.get(key, 0.0) for key, value in after.items()}
    _check_counts(delta, received=True, scored=True)
    rows = _ledger(url)
    assert sorted(r.status for r in rows) == ["failed", "scored", "scored", "scored", "skipped"]
    grades: dict[str, int] = {}
    for row in rows:
        if row.status == "scored":
            with db.session_scope(url, readonly=True) as session:
                from db.models import ScanScore

                grade = cast(
                    str, session.scalar(select(ScanScore.grade).where(ScanScore.scan_id == row.id))
                )
            grades[grade] = grades.get(grade, 0) + 1
    for grade, count in grades.items():
        assert _get(delta, "usqa_scans_scored_total", grade=grade) == count
    version = rows[0].model_version or next(r.model_version for r in rows if r.model_version)
    assert _get(after, "usqa_model_info", version=version) == 1
    assert not heartbeat.exists(), "a clean stop removes the heartbeat file"


@pytest.mark.integration
def test_scaled_worker_endpoint_adds_up_its_pool_processes(
    tmp_path: Path, random_weights: Path, postgres_ledger: Callable[[], str], redis_url: str
) -> None:
    url = postgres_ledger()
    # A Redis database of its own: no other test's worker may take these tasks.
    broker = redis_url.rsplit("/", 1)[0] + "/13"
    import redis

    redis.Redis.from_url(broker).flushdb()
    drop = tmp_path / "drop"
    _drop_files(drop)
    _age_files(drop)
    worker_port, ingest_port = _unused_port(), _unused_port()
    base = {
        **os.environ,
        "USQA_DATABASE_URL": url, "USQA_BROKER_URL": broker, "USQA_WEIGHTS": str(random_weights),
        "USQA_STABLE_SECONDS": "0.2", "USQA_HEARTBEAT_SECONDS": "2", "USQA_PRECISION": "fp32",
        "USQA_THREADS": "1", "USQA_FILES_PER_TASK": "2", "USQA_LINGER_SECONDS": "0.05",
    }  # fmt: skip
    worker_env = {**base, "USQA_METRICS_PORT": str(worker_port),
                  "USQA_HEARTBEAT_FILE": str(tmp_path / "worker.json")}  # fmt: skip
    ingest_env = {**base, "USQA_METRICS_PORT": str(ingest_port),
                  "USQA_HEARTBEAT_FILE": str(tmp_path / "ingest.json")}  # fmt: skip
    usqa = [sys.executable, "-m", "worker.cli"]
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = [
        subprocess.Popen(
            [*usqa, "worker", "--concurrency", "2"], env=worker_env,
            stdout=(logs / "worker.log").open("w"), stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [*usqa, "ingest", "--watch", str(drop)], env=ingest_env,
            stdout=(logs / "ingest.log").open("w"), stderr=subprocess.STDOUT,
        ),
    ]  # fmt: skip
    try:

        def finished() -> bool:
            rows = _ledger(url)
            return len(rows) == 5 and all(r.status in ("scored", "failed", "skipped") for r in rows)

        try:
            until(finished, 120, "every dropped file to reach a terminal row", interval=0.2)
        except BaseException:
            for log_file in logs.iterdir():
                print(log_file.name, log_file.read_text()[-3000:])
            raise
        worker = _scrape(worker_port)
        _check_counts(worker, received=False, scored=True)
        # Both pool processes may have scored; the parent's endpoint shows the sum either way.
        ingest = until(
            lambda: (
                s
                if (s := _scrape(ingest_port)) and _get(s, "usqa_scans_received_total") == 5
                else None
            ),
            30,
            "the ingester's counts",
            interval=0.2,
        )
        _check_counts(ingest, received=True, scored=False)
        assert _get(ingest, "usqa_queue_depth") >= 0
        # Both processes are healthy, with their broker.
        for name, env in (("worker", worker_env), ("ingest", ingest_env)):
            result = subprocess.run(
                [*usqa, "health"], env=env, capture_output=True, text=True, timeout=60,
                check=False,
            )  # fmt: skip
            assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"
        assert check_heartbeat(tmp_path / "worker.json").ok
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        redis.Redis.from_url(broker).flushdb()
    assert not (tmp_path / "worker.json").exists()
    assert not (tmp_path / "ingest.json").exists()

"""worker/ops/metrics.py: reason classes, the HTTP endpoint of a single process, and the
multiprocess mode used under Celery's prefork pool (children count, the parent serves)."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from worker.errors import (
    ConfigError,
    CorruptFileError,
    DecoderCrashedError,
    DecodeTimeoutError,
    InputError,
    LimitExceededError,
    NoPixelDataError,
    SkipScan,
    TransientError,
    UnreadableFileError,
    UnsupportedFileError,
)
from worker.ops import metrics


def _unused_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Sample name + sorted labels -> value, from a real HTTP scrape."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode("utf-8")
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_reason_classes_follow_the_exception_tree() -> None:
    cases = {
        UnreadableFileError("x"): "unreadable",
        UnsupportedFileError("x"): "unsupported",
        CorruptFileError("x"): "corrupt",
        LimitExceededError("x"): "limit",
        NoPixelDataError("x"): "no_pixels",
        DecodeTimeoutError("x"): "decode_timeout",
        DecoderCrashedError("x"): "decoder_crash",
        InputError("x"): "corrupt",
        TransientError("x"): "other",
        RuntimeError("x"): "other",
    }
    for error, expected in cases.items():
        assert metrics.reason_class(error) == expected, type(error).__name__
        assert expected in metrics.FAILED_REASONS
    assert metrics.reason_class(SkipScan("modality OT")) == "other"
    assert metrics.reason_class(SkipScan("modality OT"), status="skipped") == "policy"
    assert metrics.reason_class(None) == "other"


@pytest.fixture
def endpoint() -> Iterator[int]:
    port = _unused_port()
    assert metrics.serve(port, addr="127.0.0.1") == port
    try:
        yield port
    finally:
        metrics.shutdown()


def test_single_process_endpoint_counts_what_the_hooks_saw(endpoint: int) -> None:
    before = scrape(endpoint)
    now = datetime.now(UTC)
    metrics.scan_received(3)
    metrics.scan_finished(
        "scored", grade="good", received_at=now - timedelta(seconds=4), finished_at=now
    )
    metrics.scan_finished(
        "scored", grade="poor", received_at=now - timedelta(seconds=40), finished_at=now
    )
    metrics.scan_finished("failed", reason="corrupt", received_at=now, finished_at=now)
    metrics.scan_finished("skipped", reason="duplicate")
    metrics.scan_finished("failed", reason="no-such-class")  # counted as other
    metrics.inference_done(0.2, frames=16)
    metrics.model_loaded("abcdef012345")
    metrics.set_queue_depth(7)
    after = scrape(endpoint)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("usqa_scans_received_total") == 3
    assert delta("usqa_scans_scored_total", grade="good") == 1
    assert delta("usqa_scans_scored_total", grade="poor") == 1
    assert delta("usqa_scans_scored_total", grade="average") == 0
    assert delta("usqa_scans_failed_total", reason="corrupt") == 1
    assert delta("usqa_scans_failed_total", reason="other") == 1
    assert delta("usqa_scans_skipped_total", reason="duplicate") == 1
    assert delta("usqa_frames_scored_total") == 16
    assert delta("usqa_inference_seconds_count") == 1
    # Latency: three observations with a received time (4 s, 40 s, 0 s).
    assert delta("usqa_scan_latency_seconds_count") == 3
    assert delta("usqa_scan_latency_seconds_sum") == pytest.approx(44.0)
    assert delta("usqa_scan_latency_seconds_bucket", le="5.0") == 2
    assert value(after, "usqa_model_info", version="abcdef012345") == 1
    assert value(after, "usqa_queue_depth") == 7
    # Every reason class is exported from the start, so rate() and sums work.
    for reason in metrics.FAILED_REASONS:
        assert ("usqa_scans_failed_total", (("reason", reason),)) in after


def test_hooks_never_raise() -> None:
    metrics.scan_finished("scored", grade="good", received_at="not a datetime")
    metrics.inference_done("x", frames=1)


def test_bad_ports_are_configuration_errors() -> None:
    assert metrics.serve(0) == 0
    with pytest.raises(ConfigError, match="not a TCP port"):
        metrics.serve(70000)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"USQA_METRICS_PORT={port}"):
            metrics.serve(port, addr="127.0.0.1")


_PREFORK = textwrap.dedent(
    """
    import json, multiprocessing as mp, sys, urllib.request
    from worker.ops import metrics

    port = int(sys.argv[1])
    metrics.serve(port, multiprocess=True, addr="127.0.0.1")   # parent, before the fork

    def child(n):
        metrics.model_loaded("v1")
        for _ in range(n):
            metrics.scan_finished("scored", grade="average")
        metrics.scan_finished("failed", reason="decode_timeout")
        metrics.inference_done(0.1, frames=n)

    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=child, args=(n,)) for n in (2, 5)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        metrics.mark_process_dead(p.pid)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        sys.stdout.write(r.read().decode())
    metrics.shutdown()
    """
)


def test_prefork_children_are_added_up_by_the_parent_endpoint() -> None:
    port = _unused_port()
    result = subprocess.run(
        [sys.executable, "-c", _PREFORK, str(port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    samples = {}
    for family in text_string_to_metric_families(result.stdout):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert value(samples, "usqa_scans_scored_total", grade="average") == 7
    assert value(samples, "usqa_scans_failed_total", reason="decode_timeout") == 2
    assert value(samples, "usqa_frames_scored_total") == 7
    assert value(samples, "usqa_inference_seconds_count") == 2
    assert value(samples, "usqa_model_info", version="v1") == 1


def test_queue_depth_watcher_follows_its_reader() -> None:
    depth = {"value": 5}
    try:
        metrics.watch_queue_depth(lambda: depth["value"], every=0.05)

        def gauge() -> float:
            return metrics.metrics().queue_depth._value.get()

        deadline = time.monotonic() + 5
        while gauge() != 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert gauge() == 5
        depth["value"] = 2
        metrics.watch_queue_depth(lambda: depth["value"] + 1, every=0.05)  # replaces the reader
        deadline = time.monotonic() + 5
        while gauge() != 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert gauge() == 3
    finally:
        metrics.shutdown()


def test_ledger_queue_depth_counts_queued_scans(sqlite_url: str) -> None:
    import db
    from db import ledger

    url = sqlite_url
    assert metrics.ledger_queue_depth(url) == 0
    with db.session_scope(url) as session:
        for i in range(3):
            ledger.record_received(
                session, path=f"/drop/{i}.png", size_bytes=10, mtime_ns=i, sha256=f"{i:064x}"
            )
    assert metrics.ledger_queue_depth(url) == 3

"""Fault tests of the scaled mode: real Redis, real PostgreSQL, real `usqa ingest` and
`usqa worker` processes, real files. Each ends with the same check: every file dropped has
exactly one final row, and nothing is scored twice."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pydicom
import pytest
import redis

from tests.helpers.files import FAULTS, copy_dicom, write_png
from tests.helpers.poll import until
from tests.integration.fault_stack import (
    Stack,
    ensure_postgres,
    ensure_redis,
    restart_postgres,
    restart_redis_empty,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def pngs(folder: Path, count: int, start: int = 0) -> list[Path]:
    return [
        write_png(folder / f"scan{i:04d}.png", i, size=(32, 32))
        for i in range(start, start + count)
    ]


def distinct_cines(folder: Path, count: int) -> list[Path]:
    """Copies of pydicom's real ultrasound cine, each its own SOP instance, made beside the
    drop folder and renamed into it whole (written in place, a copy could be taken before
    its new UID is saved, and then again as a changed file: a second scan, rightly)."""
    staging = folder.parent / f"{folder.name}-staging"
    out = []
    for i in range(count):
        made = copy_dicom("examples_ybr_color.dcm", staging / f"cine{i:02d}.dcm")
        ds = pydicom.dcmread(made)
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(made)
        out.append(made.replace(folder / made.name))
    return out


def holder_pids(stack: Stack) -> dict[int, list[int]]:
    """pid -> ids of the scans that process is scoring right now."""
    held: dict[int, list[int]] = {}
    for row in stack.rows():
        if row.status == "processing" and row.worker:
            held.setdefault(int(row.worker.rsplit(":", 1)[1]), []).append(row.id)
    return held


@pytest.mark.parametrize("victim", ["pool-process", "whole-worker"])
def test_kill_9_a_worker_mid_batch(stack: Stack, victim: str) -> None:
    slow = {"USQA_FRAMES_TO_SCORE": "0"}  # all 30 frames of each cine: batches take seconds
    stack.start_worker("a", env=slow)
    stack.start_ingester()
    files = distinct_cines(stack.drop, 8)
    a_pool = set(stack.pool_pids("a"))
    caught: dict[int, list[int]] = {}
    until(
        lambda: bool(
            caught.update({p: i for p, i in holder_pids(stack).items() if p in a_pool}) or caught
        ),
        stack.patience(120),
        "worker a to take a batch",
        interval=0.02,
    )
    [(pid, batch)] = caught.items()
    if victim == "pool-process":
        os.kill(pid, signal.SIGKILL)  # Celery re-queues the message (reject_on_worker_lost)
    else:
        stack.kill_group("a")  # the machine died: its heartbeat stops, the batch is re-queued
    held_now = [r for r in stack.rows() if r.id in batch]
    assert all(r.status == "processing" for r in held_now), "the batch was not in hand"
    stack.start_worker("b", env=slow)
    stack.wait_all_terminal(len(files), 240)
    rows = stack.check_exactly_once(files)
    redone = [r for r in rows if r.id in batch]
    assert {r.status for r in rows} == {"scored"}
    killed = f"{socket.gethostname()}:{pid}"
    assert all(r.worker != killed and r.attempts == 2 for r in redone), [
        (r.worker, r.attempts) for r in redone
    ]


def test_redis_restarted_empty_while_scans_are_queued(stack: Stack) -> None:
    stack.env["USQA_FILES_PER_TASK"] = "2"
    stack.start_worker("a")
    stack.start_ingester()
    files = pngs(stack.drop, 100)
    client = redis.Redis.from_url(stack.broker)
    try:
        until(
            lambda: client.llen("usqa") >= 10,
            stack.patience(60),
            "a backlog on the broker",
            interval=0.02,
        )
        queued_before = stack.count("queued")
        backlog = client.llen("usqa")
        restart_redis_empty()
        # The backlog is gone. The ingester and reconciler may already be sending again, so
        # compare with the backlog rather than expecting an empty queue.
        assert redis.Redis.from_url(stack.broker).llen("usqa") < backlog
        assert queued_before > 0
        stack.wait_all_terminal(len(files), 180)
    finally:
        ensure_redis()
        client.close()
    rows = stack.check_exactly_once(files)
    assert {r.status for r in rows} == {"scored"}
    assert any("re-queued" in r.get("message", "") for r in stack.records("ingest"))


def test_the_start_up_scan_takes_files_that_arrived_while_the_ingester_was_down(
    stack: Stack,
) -> None:
    stack.start_worker("a")
    stack.start_ingester()
    assert stack.stop("ingest") == 0
    files = pngs(stack.drop, 100)
    assert stack.count() == 0
    stack.start_ingester("ingest2")
    stack.wait_all_terminal(len(files), 180)
    rows = stack.check_exactly_once(files)
    assert {r.status for r in rows} == {"scored"}


def test_a_file_written_slowly_is_not_read_before_it_is_complete(stack: Stack) -> None:
    stack.env["USQA_STABLE_SECONDS"] = "1.0"
    stack.start_worker("a")
    stack.start_ingester()
    content = write_png(stack.tmp / "big.png", 99, size=(600, 800)).read_bytes()
    target = stack.drop / "slow.png"
    chunks = [
        content[i : i + len(content) // 12 + 1]
        for i in range(0, len(content), len(content) // 12 + 1)
    ]
    with target.open("wb") as fh:  # about 4 s, pausing less than the 1 s window
        for chunk in chunks:
            fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
            assert stack.count() == 0, "recorded while still being written"
            time.sleep(0.35)
    finished = time.time()
    stack.wait_all_terminal(1, 180)
    [row] = stack.check_exactly_once([target])
    assert row.status == "scored" and row.size_bytes == len(content)
    assert row.received_at.timestamp() >= finished


def test_postgres_restarted_during_scoring(stack: Stack) -> None:
    stack.start_worker("a")
    stack.start_worker("b")
    stack.start_ingester()
    files = pngs(stack.drop, 80)
    try:
        until(
            lambda: stack.count("scored") >= 4,
            stack.patience(120),
            "scoring to start",
            interval=0.05,
        )
        restart_postgres()
    finally:
        ensure_postgres()
    stack.wait_all_terminal(len(files), 240)
    rows = stack.check_exactly_once(files)
    assert {r.status for r in rows} == {"scored"}
    logs = stack.log("a") + stack.log("b") + stack.log("ingest")
    assert "not available" in logs or "will be retried" in logs  # the outage was seen


def test_a_poison_file_fails_after_the_attempt_cap_and_its_neighbours_are_scored(
    stack: Stack,
) -> None:
    faults = {"PYTHONPATH": str(FAULTS), "USQA_TEST_FAULTS": "1", "USQA_DECODE_TIMEOUT": "2"}
    stack.start_worker("a", env=faults)
    stack.start_worker("b", env=faults)
    stack.start_ingester()
    files = pngs(stack.drop, 6)
    files.append(write_png(stack.drop / "crash-decoder.png", 1001))
    files.append(write_png(stack.drop / "hang-decoder.png", 1002))
    files += pngs(stack.drop, 6, start=10)
    stack.wait_all_terminal(len(files), 180)
    rows = {Path(r.path).name: r for r in stack.check_exactly_once(files)}
    crash, hang = rows.pop("crash-decoder.png"), rows.pop("hang-decoder.png")
    assert {r.status for r in rows.values()} == {"scored"}
    assert crash.status == "failed" and crash.attempts == 3
    assert "SIGSEGV" in (crash.reason or "") and "after 3 attempts" in (crash.reason or "")
    assert hang.status == "failed" and "longer than 2 s" in (hang.reason or "")
    for name in ("a", "b"):
        assert stack.procs[name].poll() is None  # the workers lived through it


def test_a_burst_of_1000_files_is_scored_once_each(stack: Stack) -> None:
    stack.env["USQA_FILES_PER_TASK"] = "16"
    stack.start_worker("a")
    stack.start_worker("b")
    stack.start_ingester()
    staging = stack.tmp / "staging"
    made = pngs(staging, 1000)
    twin = staging / "twin-copy.png"
    twin.write_bytes(made[0].read_bytes())  # the same file under a second name
    files = []
    for path in [*made, twin]:
        dest = stack.drop / path.name
        path.rename(dest)
        files.append(dest)
    started = time.monotonic()
    stack.wait_all_terminal(len(files), 600)
    took = time.monotonic() - started
    rows = stack.check_exactly_once(files)
    statuses = [r.status for r in rows]
    assert statuses.count("scored") == 1000 and statuses.count("skipped") == 1
    [dup] = [r for r in rows if r.status == "skipped"]
    original = next(r for r in rows if r.id == dup.duplicate_of_id)
    assert {Path(dup.path).name, Path(original.path).name} == {"scan0000.png", "twin-copy.png"}
    print(f"1001 files scored by two workers in {took:.1f} s")


def test_sigterm_lets_a_worker_finish_the_batch_in_hand(stack: Stack) -> None:
    slow = {"USQA_FRAMES_TO_SCORE": "0"}
    stack.start_worker("a", env=slow)
    stack.start_ingester()
    files = distinct_cines(stack.drop, 2)  # one batch, seconds of work
    pool = set(stack.pool_pids("a"))
    until(
        lambda: any(p in pool for p in holder_pids(stack)),
        stack.patience(120),
        "worker a to take the batch",
        interval=0.02,
    )
    stack.procs["a"].send_signal(signal.SIGTERM)
    assert stack.procs["a"].wait(stack.patience(120)) == 0
    rows = stack.check_exactly_once(files)
    assert {r.status for r in rows} == {"scored"}
    assert {r.attempts for r in rows} == {1}  # finished by the worker that had it, not redone
    assert {int(r.worker.rsplit(":", 1)[1]) for r in rows if r.worker} <= pool

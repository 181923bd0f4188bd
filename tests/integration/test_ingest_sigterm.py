"""SIGTERM stops `usqa run --watch` and `usqa ingest --watch` within seconds while the
ingester is hashing a large file (a sparse file just under USQA_MAX_FILE_BYTES: about a
minute of reading); meanwhile the heartbeat goes on and a small file that arrives is
recorded without waiting for the big one. Real processes on real
PostgreSQL and Redis."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.helpers.files import write_png
from tests.helpers.poll import until
from tests.integration.fault_stack import Stack
from worker.ops.health import read_beat

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIZE = 60 << 30  # sparse: no disk used, but hashing it reads 60 GiB of zeros
LIMIT = 64 << 30
STOP_LIMIT_S = 15.0


def hashing(pid: int, path: Path) -> int | None:
    """How far process ``pid`` has read ``path`` (None: it does not have it open)."""
    fds = Path(f"/proc/{pid}/fd")
    try:
        for fd in fds.iterdir():
            try:
                if os.readlink(fd) == str(path):
                    info = (fds.parent / "fdinfo" / fd.name).read_text()
                    return int(info.split("pos:")[1].split()[0])
            except OSError:
                continue
    except OSError:
        return None
    return None


def beat_time(path: Path) -> float:
    try:
        return read_beat(path).time
    except (OSError, ValueError):
        return 0.0


@pytest.mark.parametrize("command", ["run", "ingest"])
def test_sigterm_stops_the_ingester_while_it_hashes_a_large_file(
    stack: Stack, command: str
) -> None:
    big = stack.drop / "big.dcm"
    with big.open("wb") as fh:
        os.truncate(fh.fileno(), SIZE)
    beat = stack.tmp / "heartbeat.json"
    env = {"USQA_MAX_FILE_BYTES": str(LIMIT), "USQA_HEARTBEAT_FILE": str(beat)}
    pid = stack.start(command, command, "--watch", str(stack.drop), env=env)
    proc = stack.procs[command]
    until(lambda: (hashing(pid, big) or 0) > 0, 180, "the ingester to start hashing big.dcm")

    # the loop goes on while a thread hashes: a fresh beat comes (one per 10 s at most)
    first = beat_time(beat)
    until(lambda: beat_time(beat) > first, 60, "a heartbeat while big.dcm is hashed")
    assert proc.poll() is None, stack.log(command)

    # a small file that arrives meanwhile does not wait behind the big one
    write_png(stack.tmp / "small.png", 1).rename(stack.drop / "small.png")
    until(lambda: stack.count() == 1, 60, "small.png to be recorded while big.dcm is hashed")
    assert (hashing(pid, big) or 0) < SIZE, "hashing finished too soon for the test"

    asked = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    until(lambda: proc.poll() is not None, 60, f"usqa {command} to exit after SIGTERM")
    took = time.monotonic() - asked
    # 2-4 s on an idle machine; the limit leaves room for a loaded one, and is far below the
    # minute (or more) that waiting for the hash to end would take
    assert took < STOP_LIMIT_S, f"usqa {command} took {took:.1f} s to stop after SIGTERM"
    assert proc.returncode == 0, stack.log(command)
    assert not beat.exists()  # a clean stop removes its heartbeat
    [row] = stack.rows()  # big.dcm was not recorded half-read
    assert row.path == str(stack.drop / "small.png")

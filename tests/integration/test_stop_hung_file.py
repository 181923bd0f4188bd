"""SIGTERM stops `usqa worker` and `usqa run --watch` within seconds even while a file hangs
in the decoder: the other files of its batch are scored (a spare decoder reads them), the
hung file's scan goes back to ``queued`` with the reason, and nothing waits for
USQA_DECODE_TIMEOUT. Real processes, real PostgreSQL and Redis, the fault hook's
``hang-decoder`` file."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.helpers.files import FAULTS, write_png
from tests.helpers.poll import until
from tests.integration.fault_stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STOP_LIMIT_S = 15.0  # 2-5 s on an idle machine; far below the 600 s decode limit set here
FAULT_ENV = {
    "PYTHONPATH": str(FAULTS),
    "USQA_TEST_FAULTS": "1",
    "USQA_DECODE_TIMEOUT": "600",
    "USQA_FILES_PER_TASK": "4",
    "USQA_LINGER_SECONDS": "2",  # the four files go in one batch
}


def _status(stack: Stack) -> dict[str, tuple[str, str | None]]:
    return {Path(r.path).name: (r.status, r.reason) for r in stack.rows()}


@pytest.mark.parametrize("command", ["worker", "run"])
def test_sigterm_gives_up_a_hung_file_and_stops_within_seconds(stack: Stack, command: str) -> None:
    if command == "worker":
        stack.start_worker("scoring", env=FAULT_ENV)
        stack.start_ingester()
    else:
        stack.start("scoring", "run", "--watch", str(stack.drop), env={**stack.beat(), **FAULT_ENV})
    names = ["hang-decoder.png", "a.png", "b.png", "c.png"]
    for i, name in enumerate(names):
        write_png(stack.tmp / name, i).rename(stack.drop / name)
    until(
        lambda: (
            [_status(stack).get(n, ("",))[0] for n in names]
            == ["processing", "scored", "scored", "scored"]
        ),
        stack.patience(180),
        "the three good files to be scored while hang-decoder.png hangs",
        interval=0.25,
    )
    proc = stack.procs["scoring"]
    asked = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    until(lambda: proc.poll() is not None, 120, f"usqa {command} to exit after SIGTERM")
    took = time.monotonic() - asked
    assert took < STOP_LIMIT_S, f"usqa {command} took {took:.1f} s to stop after SIGTERM"
    assert proc.returncode == 0, stack.log("scoring")[-3000:]
    status, reason = _status(stack)["hang-decoder.png"]
    assert status == "queued", (status, reason)
    assert reason is not None and "stopped before this file was read" in reason

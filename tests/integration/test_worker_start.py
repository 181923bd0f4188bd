"""A `usqa worker` pool process loads the model when it starts, not with its first batch."""

from __future__ import annotations

import socket

import pytest

import db
from db.models import WorkerProcess
from tests.helpers.poll import until
from tests.integration.fault_stack import Stack

pytestmark = pytest.mark.integration


def test_a_pool_process_has_its_model_loaded_before_any_batch(stack: Stack) -> None:
    stack.start_worker("worker")
    pool = stack.pool_pids("worker")[0]
    name = f"{socket.gethostname()}:{pool}"

    def loaded() -> bool:
        with db.session_scope(stack.url, readonly=True) as s:
            row = s.get(WorkerProcess, name)
            return row is not None and row.model_version is not None

    # no file was dropped and no task sent: only the start-up can have loaded the model
    until(loaded, stack.patience(60), "the pool process's heartbeat to name its loaded model")
    assert stack.count() == 0

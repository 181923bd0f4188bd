"""Liveness is judged with the database's clock: a worker whose machine runs 30 s behind,
judged by a reconciler and a second worker whose machine runs 30 s ahead, still counts as
alive. Real PostgreSQL (its own clock), real ledger helpers."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import db
import db.clock
import db.models
from db import ledger
from db.models import PROCESSING, Scan
from tests.helpers.files import make_settings, write_png
from tests.helpers.ledger import receive
from worker.ingest.reconciler import reconcile

pytestmark = pytest.mark.integration

SKEW = timedelta(seconds=30)
# the ledger package and each of its modules that reads this process's clock
LEDGER_MODULES = [
    module
    for name, module in sorted(sys.modules.items())
    if (name == "db.ledger" or name.startswith("db.ledger.")) and hasattr(module, "utcnow")
]


@pytest.fixture
def pg_url(postgres_ledger: Callable[[], str]) -> str:
    return postgres_ledger()


@pytest.fixture
def local_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[timedelta], None]]:
    """Sets how far this process's clock is off (every module's view of ``utcnow``)."""

    def skew(offset: timedelta) -> None:
        def skewed() -> datetime:
            return datetime.now(UTC) + offset

        for module in (db.models, db.clock, *LEDGER_MODULES):
            monkeypatch.setattr(module, "utcnow", skewed)

    yield skew


def test_a_heartbeat_written_with_a_slow_clock_is_judged_alive_by_a_fast_one(
    pg_url: str, tmp_path: Path, random_weights: Path, local_clock: Callable[[timedelta], None]
) -> None:
    settings = make_settings(pg_url, random_weights, heartbeat_seconds=2.0)
    assert settings.dead_after_seconds < SKEW.total_seconds() * 2
    scan_id = receive(pg_url, write_png(tmp_path / "a.png", 1))

    local_clock(-SKEW)  # worker a's machine: 30 s behind
    with db.session_scope(pg_url) as s:
        ledger.heartbeat(s, name="a:1", hostname="a", pid=1, mode="celery")
        now = ledger.db_now(s)
        [held] = ledger.claim(
            s,
            [scan_id],
            token="token-a",
            worker="a:1",
            stale_before=ledger.age_cutoff(settings.stuck_seconds, now),
            dead_before=ledger.age_cutoff(settings.dead_after_seconds, now),
        )
    assert held.id == scan_id

    local_clock(+SKEW)  # the reconciler's and worker b's machine: 30 s ahead
    sent: list[list[int]] = []
    assert reconcile(settings, sent.append, transport_empty=True) == 0
    assert sent == []
    with db.session_scope(pg_url) as s:
        now = ledger.db_now(s)
        taken = ledger.claim(
            s,
            [scan_id],
            token="token-b",
            worker="b:1",
            stale_before=ledger.age_cutoff(settings.stuck_seconds, now),
            dead_before=ledger.age_cutoff(settings.dead_after_seconds, now),
        )
    assert taken == []
    with db.session_scope(pg_url, readonly=True) as s:
        row = s.get(Scan, scan_id)
        assert row is not None
        assert (row.status, row.worker, row.attempts) == (PROCESSING, "a:1", 1)


def test_a_scan_queued_by_a_fast_clock_is_not_taken_for_lost_by_a_slow_one(
    pg_url: str, tmp_path: Path, random_weights: Path, local_clock: Callable[[timedelta], None]
) -> None:
    """The ingester's queued_at and the reconciler's "waiting with no message" grace."""
    settings = make_settings(pg_url, random_weights, heartbeat_seconds=2.0)
    local_clock(-SKEW)  # the ingester's machine
    scan_id = receive(pg_url, write_png(tmp_path / "a.png", 1))
    local_clock(+SKEW)  # the reconciler's machine
    sent: list[list[int]] = []
    assert reconcile(settings, sent.append, transport_empty=True) == 0, "re-sent at once"
    assert sent == []
    with db.session_scope(pg_url, readonly=True) as s:
        row = s.get(Scan, scan_id)
        assert row is not None and row.status == "queued"

"""One test per row of the retry table (worker/scoring/retry.py, docs/operations.md), each in both
modes: the embedded runner (its retry heap) and the Celery task body (``run_batch`` with
the bound task's ``request`` and ``retry``). Real ledger, real decoder child, real files;
the unexpected error and the time limit are raised from inside the scoring path."""

from __future__ import annotations

import errno
import os
import pathlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from celery.exceptions import Retry, SoftTimeLimitExceeded

import db
from db.models import Scan
from tests.helpers.files import FAULTS, make_settings, write_png
from tests.helpers.ledger import receive
from worker.scoring import ScoringContext, retry
from worker.scoring import batch as scoring_batch
from worker.transport import celery_app
from worker.transport.embedded import Runner

pytestmark = pytest.mark.integration

MODES = ["embedded", "celery"]
DOWN_URL = "postgresql+psycopg://postgres@127.0.0.1:1/test"  # nothing listens on port 1


class BoundTask:
    """What Celery hands the task body: ``request`` (id, retries) and ``retry``."""

    def __init__(self, token: str, retries: int = 0) -> None:
        self.request = SimpleNamespace(id=token, retries=retries)
        self.countdowns: list[float] = []

    def retry(self, exc: BaseException, countdown: float) -> Retry:
        self.countdowns.append(countdown)
        return Retry(exc=exc, when=countdown)


class Attempt:
    """The outcome of one try in either mode: the batch's retry delay (None: not retried
    as a batch), and the scan ids queued again on their own with their delay."""

    def __init__(self) -> None:
        self.batch_delay: float | None = None
        self.batch_token: str | None = None
        self.scans_again: list[int] = []
        self.scans_delay: float | None = None


def attempt(mode: str, pipeline: ScoringContext, ids: list[int], monkeypatch: Any) -> Attempt:
    """Run one try of the batch ``ids`` the way ``mode`` does."""
    out = Attempt()
    if mode == "embedded":
        runner = Runner(pipeline)
        runner._run(ids, "token-1", 0)
        for due, _, again, token, _ in runner._heap:
            if token == "token-1":
                out.batch_delay, out.batch_token = due, token
            else:
                out.scans_again += again
                out.scans_delay = due
        import time

        now = time.monotonic()
        out.batch_delay = None if out.batch_delay is None else out.batch_delay - now
        out.scans_delay = None if out.scans_delay is None else out.scans_delay - now
        return out
    sent: list[tuple[list[int], float | None]] = []
    monkeypatch.setattr(celery_app, "_pipeline", pipeline)
    monkeypatch.setattr(
        celery_app, "send_batch", lambda s, ids, countdown=None: sent.append((ids, countdown))
    )
    task = BoundTask("token-1")
    try:
        celery_app.run_batch(task, ids, pipeline.settings)
    except Retry:
        out.batch_delay, out.batch_token = task.countdowns[-1], task.request.id
    for again, countdown in sent:
        out.scans_again += again
        out.scans_delay = countdown
    return out


def scan(url: str, scan_id: int) -> Scan:
    with db.session_scope(url, readonly=True) as s:
        row = s.get(Scan, scan_id)
        assert row is not None
        return row


@pytest.fixture
def pipelines(random_weights: Path) -> Iterator[Callable[..., ScoringContext]]:
    made: list[ScoringContext] = []

    def build(url: str, **overrides: Any) -> ScoringContext:
        pipeline = ScoringContext(make_settings(url, random_weights, **overrides))
        made.append(pipeline)
        return pipeline

    yield build
    for pipeline in made:
        pipeline.close()


@pytest.mark.parametrize("mode", MODES)
def test_database_unavailable_retries_the_batch_without_an_attempt(
    mode: str,
    sqlite_url: str,
    tmp_path: Path,
    pipelines: Callable[..., ScoringContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scan_id = receive(sqlite_url, write_png(tmp_path / "a.png", 1))
    pipeline = pipelines(DOWN_URL)
    out = attempt(mode, pipeline, [scan_id], monkeypatch)
    assert out.batch_delay is not None and 0.8 <= out.batch_delay <= 1.2, out.batch_delay
    assert out.batch_token == "token-1"
    assert scan(sqlite_url, scan_id).attempts == 0  # the ledger it can reach: untouched


@pytest.mark.parametrize("mode", MODES)
def test_a_model_that_fails_to_load_retries_the_batch_without_an_attempt(
    mode: str,
    sqlite_url: str,
    tmp_path: Path,
    random_weights: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scan_id = receive(sqlite_url, write_png(tmp_path / "a.png", 1))
    missing = make_settings(sqlite_url, tmp_path / "missing.pt")
    pipeline = ScoringContext(missing)
    try:
        out = attempt(mode, pipeline, [scan_id], monkeypatch)
    finally:
        pipeline.close()
    assert out.batch_delay is not None and 8.0 <= out.batch_delay <= 12.0, out.batch_delay
    row = scan(sqlite_url, scan_id)
    assert (row.status, row.attempts) == ("queued", 0)


@pytest.mark.parametrize("mode", MODES)
def test_an_unexpected_error_releases_the_batch_and_retries_it_up_to_the_cap(
    mode: str,
    sqlite_url: str,
    tmp_path: Path,
    pipelines: Callable[..., ScoringContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scan_id = receive(sqlite_url, write_png(tmp_path / "a.png", 1))
    pipeline = pipelines(sqlite_url)

    def bug(*_: Any) -> None:
        raise RuntimeError("a bug in the writer")

    monkeypatch.setattr(scoring_batch, "write_outcomes", bug)
    out = attempt(mode, pipeline, [scan_id], monkeypatch)
    assert out.batch_delay is not None and 0.8 <= out.batch_delay <= 1.2, out.batch_delay
    row = scan(sqlite_url, scan_id)
    assert (row.status, row.attempts) == ("queued", 1), "released, not left processing"
    assert "a bug in the writer" in (row.reason or "")
    for _ in range(pipeline.settings.max_attempts):  # each retry uses an attempt
        attempt(mode, pipeline, [scan_id], monkeypatch)
    row = scan(sqlite_url, scan_id)
    assert row.status == "failed", (row.status, row.attempts, row.reason)
    assert "gave up after 3 attempts" in (row.reason or "")
    assert "a bug in the writer" in (row.reason or "")


@pytest.mark.parametrize("mode", MODES)
def test_a_batch_past_the_time_limit_is_released_and_retried(
    mode: str,
    sqlite_url: str,
    tmp_path: Path,
    pipelines: Callable[..., ScoringContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Celery's soft time limit; the runner, without one, treats it as any other error."""
    scan_id = receive(sqlite_url, write_png(tmp_path / "a.png", 1))
    pipeline = pipelines(sqlite_url)

    def too_long(*_: Any) -> None:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(scoring_batch, "read_and_score", too_long)
    out = attempt(mode, pipeline, [scan_id], monkeypatch)
    assert out.batch_delay is not None and 0.8 <= out.batch_delay <= 1.2
    row = scan(sqlite_url, scan_id)
    assert (row.status, row.attempts) == ("queued", 1)


@pytest.mark.parametrize("mode", MODES)
def test_a_crashed_decoder_retries_that_scan_alone(
    mode: str,
    sqlite_url: str,
    tmp_path: Path,
    pipelines: Callable[..., ScoringContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(FAULTS), *sys.path]))
    monkeypatch.setenv("USQA_TEST_FAULTS", "1")
    crash = receive(sqlite_url, write_png(tmp_path / "crash-decoder.png", 1))
    good = receive(sqlite_url, write_png(tmp_path / "good.png", 2))
    pipeline = pipelines(sqlite_url)
    out = attempt(mode, pipeline, [crash, good], monkeypatch)
    assert out.batch_delay is None
    assert out.scans_again == [crash]
    assert out.scans_delay is not None and 1.6 <= out.scans_delay <= 2.4, out.scans_delay
    assert scan(sqlite_url, good).status == "scored"
    row = scan(sqlite_url, crash)
    assert row.status == "queued" and "SIGSEGV" in (row.reason or "")


@pytest.fixture
def stalled_share(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], None]:
    """Makes ``stat`` of one path fail with EIO, as a stalling NFS/SMB share does."""
    real = pathlib.Path.stat

    def arm(path: Path) -> None:
        def stat(self: pathlib.Path, *args: Any, **kwargs: Any) -> os.stat_result:
            if str(self) == str(path):
                raise OSError(errno.EIO, os.strerror(errno.EIO), str(self))
            return real(self, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, "stat", stat)

    return arm


@pytest.mark.parametrize("mode", MODES)
def test_a_stalled_share_retries_that_scan_and_is_not_a_permanent_failure(
    mode: str,
    sqlite_url: str,
    tmp_path: Path,
    pipelines: Callable[..., ScoringContext],
    monkeypatch: pytest.MonkeyPatch,
    stalled_share: Callable[[Path], None],
) -> None:
    stuck_file = write_png(tmp_path / "on-share.png", 1)
    stuck = receive(sqlite_url, stuck_file)
    good = receive(sqlite_url, write_png(tmp_path / "good.png", 2))
    pipeline = pipelines(sqlite_url)
    stalled_share(stuck_file)
    out = attempt(mode, pipeline, [stuck, good], monkeypatch)
    assert out.batch_delay is None and out.scans_again == [stuck]
    assert out.scans_delay is not None and 1.6 <= out.scans_delay <= 2.4
    row = scan(sqlite_url, stuck)
    assert row.status == "queued" and "did not answer" in (row.reason or ""), row.reason
    assert scan(sqlite_url, good).status == "scored"
    monkeypatch.undo()  # the share answers again: the retry scores it
    out = attempt(mode, pipeline, [stuck], monkeypatch)
    assert scan(sqlite_url, stuck).status == "scored"


@pytest.mark.parametrize("mode", MODES)
def test_a_bad_file_is_failed_at_once_and_not_retried(
    mode: str,
    sqlite_url: str,
    tmp_path: Path,
    pipelines: Callable[..., ScoringContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\0" * 200 + b"garbage")
    scan_id = receive(sqlite_url, junk)
    out = attempt(mode, pipelines(sqlite_url), [scan_id], monkeypatch)
    assert out.batch_delay is None and out.scans_again == []
    row = scan(sqlite_url, scan_id)
    assert (row.status, row.attempts) == ("failed", 1)


def test_the_table_names_every_rule_of_the_policy() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    for kind in (RuntimeError("x"), SoftTimeLimitExceeded(), *_transients()):
        rule = retry.batch_retry(kind, 0, (SoftTimeLimitExceeded,)).rule
        assert rule in {"transient", "model", "time_limit", "unexpected"}
    for row in (
        "database or broker unavailable",
        "the model failed to load",
        "USQA_TASK_TIME_LIMIT",
        "an unexpected exception",
        "the decoder process crashed",
        "storage did not answer",
        "a bad file",
    ):
        assert row in doc, row


def _transients() -> list[BaseException]:
    from worker.errors import DatabaseUnavailableError, FileUnavailableError, ModelError

    return [DatabaseUnavailableError("x"), FileUnavailableError("x"), ModelError("x")]

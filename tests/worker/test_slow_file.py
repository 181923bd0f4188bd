"""A slow or hung file never holds back the other files of its batch: what is finished
before it is committed while it still decodes, and the files behind it are read by a spare
decoder child and committed too, in both modes (the embedded runner, the Celery task
body). Real ledger, real decoder child; the slow file is the fault
hook's ``slow-decoder`` (it decodes once the test creates ``<file>.release``)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import db
from db.models import Scan
from tests.helpers.files import FAULTS, make_settings, write_png
from tests.helpers.ledger import receive
from tests.helpers.poll import until
from worker.scoring import ScoringContext
from worker.transport import celery_app
from worker.transport.embedded import Runner

pytestmark = pytest.mark.integration

LIMIT_S = 120.0  # the most any step may take, however loaded the machine (polled, not slept)


def _statuses(url: str) -> dict[str, str]:
    with db.session_scope(url, readonly=True) as s:
        return {Path(r.path).name: r.status for r in s.query(Scan).all()}


@pytest.fixture
def url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.node.callspec.params["mode"] == "embedded":
        return sqlite_url
    fresh: str = request.getfixturevalue("postgres_ledger")()
    return fresh


@pytest.fixture
def faulty_pipeline(
    url: str, random_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ScoringContext]:
    """A pipeline whose decoder child loads the fault hooks."""
    path = os.pathsep.join(p for p in (str(FAULTS), os.environ.get("PYTHONPATH")) if p)
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setenv("USQA_TEST_FAULTS", "1")
    pipeline = ScoringContext(make_settings(url, random_weights, decode_timeout=600.0))
    yield pipeline
    pipeline.close()


def _run(mode: str, pipeline: ScoringContext, ids: list[int]) -> None:
    if mode == "embedded":
        Runner(pipeline)._run(ids, "token-1", 0)
        return
    task = SimpleNamespace(request=SimpleNamespace(id="token-1", retries=0))
    celery_app.run_batch(task, ids, pipeline.settings)


@pytest.mark.parametrize("slow_at", ["last", "first"])
@pytest.mark.parametrize("mode", ["embedded", "celery"])
def test_other_files_are_committed_while_a_slow_one_still_decodes(
    mode: str,
    slow_at: str,
    url: str,
    tmp_path: Path,
    faulty_pipeline: ScoringContext,
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(celery_app, "_pipeline", faulty_pipeline)
    fast = [write_png(tmp_path / f"fast{i}.png", i) for i in range(3)]
    slow = write_png(tmp_path / "slow-decoder.png", 99)
    order = [*fast, slow] if slow_at == "last" else [slow, *fast]
    ids = [receive(url, path) for path in order]
    failure: list[BaseException] = []

    def batch() -> None:
        try:
            _run(mode, faulty_pipeline, ids)
        except BaseException as exc:  # reported below
            failure.append(exc)

    worker = threading.Thread(target=batch, daemon=True)
    worker.start()
    try:
        until(
            lambda: all(_statuses(url)[p.name] == "scored" for p in fast),
            LIMIT_S,
            "the fast files' rows to be committed",
        )
        assert _statuses(url)[slow.name] == "processing"
        assert worker.is_alive(), "the batch ended: the slow file did not hold it"
    finally:
        Path(f"{slow}.release").touch()
        worker.join(LIMIT_S)
    assert not worker.is_alive() and not failure, failure
    assert set(_statuses(url).values()) == {"scored"}

"""Fixtures of the worker tests: settings on a fresh ledger, a shared random-weights scorer,
and tiny real files (PNG images, pydicom's real ultrasound DICOM)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from usqa_files import make_settings

import db
from worker.scoring import ScoringContext


@pytest.fixture(scope="session")
def scorer(random_weights: Path) -> Any:
    """One random-weights scorer for every test of the session (loading costs seconds)."""
    from model import Scorer

    return Scorer.load(random_weights, precision="fp32", threads=1)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'usqa.db'}"
    db.upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, upgraded ledger on SQLite, then on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'usqa.db'}"
    else:
        make: Callable[[], str] = request.getfixturevalue("postgres_database")
        url = make()
    db.upgrade(url)
    return url


@pytest.fixture
def pipeline_for(scorer: Any, random_weights: Path) -> Iterator[Callable[..., ScoringContext]]:
    """Builds started pipelines (sharing the session scorer) and closes them afterwards."""
    made: list[ScoringContext] = []

    def build(url: str, **overrides: Any) -> ScoringContext:
        pipeline = ScoringContext(make_settings(url, random_weights, **overrides), scorer=scorer)
        pipeline.start()
        made.append(pipeline)
        return pipeline

    yield build
    for pipeline in made:
        pipeline.close()

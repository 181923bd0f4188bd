"""Fixtures of the worker tests: a shared random-weights scorer and started scoring
contexts on it (the ledgers come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.files import make_settings
from worker.scoring import ScoringContext


@pytest.fixture(scope="session")
def scorer(random_weights: Path) -> Any:
    """One random-weights scorer for every test of the session (loading costs seconds)."""
    from model import Scorer

    return Scorer.load(random_weights, precision="fp32", threads=1)


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

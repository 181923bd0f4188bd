"""Shared fixtures. Real services, never mocks: a service that is not reachable fails the
test (CI sets USQA_TEST_REQUIRE_SERVICES=1 and starts them in .ci/run)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BUSI = SHARED / "datasets" / "busi"


@pytest.fixture(scope="session")
def busi_dir() -> Path:
    """The BUSI copy beside the checkout (tests and training only; never the product)."""
    if not (BUSI / "splits.csv").is_file():
        pytest.fail(f"BUSI data not found at {BUSI}: CI runs with ../shared beside the clone")
    return BUSI


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return os.environ.get(
        "USQA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ.get("USQA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

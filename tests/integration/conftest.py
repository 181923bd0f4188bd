"""Fixtures of the fault tests: real Redis (a dedicated database number, flushed before and
after), a fresh PostgreSQL database per test, real `usqa ingest` and `usqa worker`
processes, and a real drop folder."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.integration.fault_stack import Stack, ensure_redis, foreign_consumers


@pytest.fixture(scope="session")
def fault_redis_url() -> str:
    """A Redis database for the fault tests alone (other tests use USQA_TEST_REDIS_URL and
    start workers of their own on it, which must not take these tests' tasks): database
    14, or the next one down (to 10) that no leftover worker consumes from."""
    given = os.environ.get("USQA_TEST_FAULT_REDIS_URL")
    if given:
        return given
    ensure_redis()
    for number in range(14, 9, -1):
        url = f"redis://127.0.0.1:6379/{number}"
        client = redis.Redis.from_url(url)
        try:
            left = foreign_consumers(client)
        finally:
            client.close()
        if not left:
            return url
        message = f"{url} has task consumers left over ({', '.join(left)}); not used"
        warnings.warn(message, stacklevel=2)
    return "redis://127.0.0.1:6379/14"  # the broker fixture names the leftovers


@pytest.fixture
def broker(fault_redis_url: str) -> Iterator[str]:
    """The dedicated Redis test database, empty before and after."""
    ensure_redis()
    client = redis.Redis.from_url(fault_redis_url)
    left = foreign_consumers(client)
    if left:
        client.close()
        pytest.fail(
            f"{fault_redis_url} has task consumers already ({', '.join(left)}): workers left "
            "over from an interrupted run would take this test's tasks; stop them (find them "
            "with `ss -tnp | grep <port>`) or set USQA_TEST_FAULT_REDIS_URL to a free database"
        )
    client.flushdb()
    yield fault_redis_url
    try:
        client.flushdb()
    finally:
        client.close()


@pytest.fixture
def stack(
    tmp_path: Path, postgres_ledger: Callable[[], str], broker: str, random_weights: Path
) -> Iterator[Stack]:
    url = postgres_ledger()
    services = Stack(tmp_path, url, broker, random_weights)
    try:
        yield services
    finally:
        services.close()

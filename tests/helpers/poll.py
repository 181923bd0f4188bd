"""The one way a test waits: poll a condition until it holds, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(
    condition: Callable[[], T | None],
    timeout: float = 60.0,
    what: str = "the condition",
    interval: float = 0.05,
) -> T:
    """Poll ``condition`` every ``interval`` seconds until it returns a true value, and
    return that value; fail (AssertionError) naming ``what`` after ``timeout`` seconds.
    A condition that gives ``X | None`` (None: not yet) makes ``until`` give the ``X``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)

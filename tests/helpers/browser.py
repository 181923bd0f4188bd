"""The headless Chromium of the browser tests (the HTML report, the review page)."""

from __future__ import annotations

import shutil

import pytest

__all__ = ["chromium"]


def chromium() -> str:
    """Path of the installed Chromium. Missing is a failure, never a skip: tests/bootstrap.sh
    installs it (the README test command and .ci/run run it first)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("Chromium is not installed: run tests/bootstrap.sh (the README test command does)")

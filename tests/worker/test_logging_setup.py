"""The CLI's logging: the DICOM libraries' per-association and per-module INFO lines are
held back unless asked for with DEBUG; their warnings always show."""

from __future__ import annotations

import logging

import pytest

from worker.logs import QUIET_LIBRARIES, configure_logging

pytestmark = pytest.mark.fast


def test_dicom_library_chatter_is_held_back_at_info() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("text", "INFO")
        for name in QUIET_LIBRARIES:
            lib = logging.getLogger(f"{name}.association")
            assert not lib.isEnabledFor(logging.INFO)
            assert lib.isEnabledFor(logging.WARNING)
        assert logging.getLogger("worker.results.outbox").isEnabledFor(logging.INFO)
        configure_logging("text", "DEBUG")
        assert logging.getLogger("highdicom.base").isEnabledFor(logging.DEBUG)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        for name in QUIET_LIBRARIES:
            logging.getLogger(name).setLevel(logging.NOTSET)

"""Fixtures of the report tests: a small ledger, on SQLite and on PostgreSQL, whose figures
are worked out by hand in the tests (see HAND)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from tests.helpers.ledger import Row, seed

D0, D1, D2 = date(2025, 2, 27), date(2025, 3, 1), date(2025, 3, 2)
A: dict[str, Any] = {"station": "A", "manufacturer": "M1", "model_name": "X1"}

# The hand ledger. Acquired scans are received the next day at 01:00 UTC, so a view that
# used the receipt date would put them on the wrong day. Grades: good >= 80 > average >= 45.
# Defects: scan 3 lists low_gain, scan 10 dead_elements then noise; v0 judges none.
HAND = [
    Row(D1, 90, operator="op-a", transducer="L1", body_part="BREAST", **A),  # 1
    Row(D1, 70, operator="op-a", transducer="L1", body_part="BREAST", **A),  # 2
    Row(D1, 40, operator="op-b", transducer="L2", body_part="THYROID",
        defects=(("low_gain", 0.8, 1.0),), **A),  # 3
    Row(D1, 60, operator="op-b", transducer="L1", body_part="BREAST", **A),  # 4
    Row(D1, status="failed", **A),  # 5
    Row(D1, status="skipped", **A),  # 6
    Row(D1, 85, station="B", manufacturer="M2", model_name="X2", operator="op-a",
        transducer="L2", body_part="BREAST"),  # 7
    Row(D2, 50, operator="op-a", transducer="L1", body_part="BREAST", **A),  # 8
    Row(D2, 80, operator="op-b", transducer="L1", body_part="BREAST", **A),  # 9
    Row(D2, 30, operator="op-b", transducer="L2", body_part="THYROID",
        defects=(("dead_elements", 0.9, 1.0), ("noise", 0.6, 0.5)), **A),  # 10
    Row(D2, 75, station=None, acquired=False),  # 11: no metadata, received D2 12:00 UTC
    Row(D0, 10, station="C", version="v0", defect_head=False),  # 12: an older model version
    # without a defect head, scored first
    Row(D2, status="queued", **A),  # 13: still waiting
]  # fmt: skip


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """``usqa`` commands point the root logger at the (captured) stderr; undo that."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def hand_url(any_url: str) -> str:
    """The HAND ledger, on each database; scan ids 1..13 are the row numbers. Row 12 (v0)
    is scored earliest (its day is the first), so v1 is the current model version."""
    ids = seed(any_url, HAND, start=1)
    assert ids == list(range(1, 14))
    return any_url

"""The ingester's bounds: they keep one tick short and its memory flat, whatever the drop
folder holds. Read at call time (``limits.TICK_SECONDS``), so a test can change them."""

from __future__ import annotations

__all__ = [
    "KNOWN_FILES",
    "LOOKUP_BATCH",
    "MAX_PENDING",
    "PROGRESS_SECONDS",
    "REFUSED_FILES",
    "TICK_SECONDS",
]

TICK_SECONDS = 0.3  # most time one tick spends walking, or checking candidates
MAX_PENDING = 10_000  # files seen but not recorded yet; the walk waits while this many are
KNOWN_FILES = 200_000  # files remembered as recorded (older ones are looked up in the ledger)
REFUSED_FILES = 20_000  # refused paths remembered, so each is logged once
LOOKUP_BATCH = 500  # paths per ledger lookup
PROGRESS_SECONDS = 10.0  # a long walk logs its progress this often

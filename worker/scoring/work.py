"""The work types of a batch: one :class:`ScanWork` per claimed scan, what reading its file
found (:class:`FileRead`), and what the batch did (:class:`BatchResult`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from db import ledger
from db.models import FAILED, Scan

__all__ = ["RETRY", "BatchResult", "FileRead", "ScanWork"]

RETRY = "retry"


@dataclass
class BatchResult:
    """What :func:`process_scans` did: the status written per scan id, the scans released
    for a later retry, and the ids it did not claim (already finished or held elsewhere)."""

    token: str
    statuses: dict[int, str] = field(default_factory=dict)
    retry: list[int] = field(default_factory=list)
    not_claimed: list[int] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(1 for s in self.statuses.values() if s == FAILED)


@dataclass
class ScanWork:
    """One claimed scan on its way through the batch."""

    scan: Scan
    columns: dict[str, Any] = field(default_factory=dict)
    frame_scores: list[tuple[int, float]] = field(default_factory=list)
    # per frame index: defect probabilities and not-ultrasound probability (None: no head)
    frame_defects: dict[int, np.ndarray] = field(default_factory=dict)
    frame_gate: dict[int, float] = field(default_factory=dict)
    outcome: ledger.Outcome | None = None
    crashed: str | None = None
    summary: Any = None
    decode_ms: float = 0.0
    inference_ms: float = 0.0
    frames: int = 0
    reason_class: str | None = None  # for the metrics: why it failed or was skipped
    interrupted: bool = False  # the process stopped before its file was read
    grade_outcome: ledger.Outcome | None = None  # skipped/failed by grading (outcomes.py)


@dataclass
class FileRead:
    """What reading one file found (made in the read-ahead thread, applied by the main
    thread, so a :class:`ScanWork` is only ever changed by one thread)."""

    columns: dict[str, Any] = field(default_factory=dict)
    outcome: ledger.Outcome | None = None
    crashed: str | None = None
    reason_class: str | None = None
    seconds: float = 0.0

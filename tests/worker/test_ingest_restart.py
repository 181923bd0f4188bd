"""A restart over a folder of files kept from earlier runs: the walk is done a slice at a
time, looks the files up in the ledger a batch at a time, logs its progress, keeps its
memory of files bounded, and records nothing again."""

from __future__ import annotations

import hashlib
import logging
import math
import time
from pathlib import Path
from typing import Any

import pytest

import db
from db import ledger
from tests.helpers.files import Drop
from tests.helpers.ledger import scans
from tests.helpers.poll import until
from worker.ingest import limits

FILES = 4000
REMEMBERED = 500  # the ingester's memory of recorded files, made small for the test


def kept_folder(url: str, root: Path) -> None:
    """FILES small files in 8 sub-folders, recorded as an earlier run recorded them."""
    entries = []
    for i in range(FILES):
        path = root / f"s{i % 8}" / f"{i}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        body = b"kept %d" % i
        path.write_bytes(body)
        st = path.stat()
        entries.append(
            ledger.ReceivedFile(
                str(path),
                st.st_size,
                st.st_mtime_ns,
                hashlib.sha256(body).hexdigest(),
                device=st.st_dev,
                inode=st.st_ino,
            )
        )
    with db.session_scope(url) as session:
        for start in range(0, FILES, 1000):
            ledger.record_received_many(session, entries[start : start + 1000], originals={})


def test_a_restart_over_many_kept_files_is_bounded_and_logs_progress(
    sqlite_url: str,
    tmp_path: Path,
    random_weights: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = tmp_path / "drop"
    kept_folder(sqlite_url, root)
    monkeypatch.setattr(limits, "KNOWN_FILES", REMEMBERED)
    monkeypatch.setattr(limits, "PROGRESS_SECONDS", 0.0)  # log every slice
    monkeypatch.setattr(limits, "TICK_SECONDS", 0.02)  # slices of a few hundred
    lookups: list[int] = []
    known_files = ledger.known_files

    def counted(session: Any, paths: Any) -> Any:
        lookups.append(len(paths))
        return known_files(session, paths)

    monkeypatch.setattr(ledger, "known_files", counted)
    drop = Drop(sqlite_url, root, random_weights, rescan_seconds=3600)
    ticks: list[float] = []

    def ticked() -> bool:
        started = time.monotonic()
        drop.ingester.tick()
        ticks.append(time.monotonic() - started)
        assert len(drop.ingester.known) <= REMEMBERED
        assert len(drop.ingester.pending) <= limits.MAX_PENDING
        return drop.ingester._passes >= 1

    with caplog.at_level(logging.INFO, logger="worker.ingest"):
        until(ticked, 120, "one full pass over the folder")

    assert len(scans(sqlite_url)) == FILES, "nothing recorded again"
    assert not drop.ingester.pending and drop.sent == []
    batch = limits.LOOKUP_BATCH
    assert max(lookups) <= batch and len(lookups) <= math.ceil(FILES / batch) + 8
    assert len(ticks) > 1, "the walk was done in one go"
    assert max(ticks) < 5.0, f"one tick took {max(ticks):.1f} s"  # a slice and a lookup
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"walking {root}: ") and "entries so far" in m for m in messages)
    assert any(m.startswith(f"walked {root}: {FILES} files") for m in messages), messages

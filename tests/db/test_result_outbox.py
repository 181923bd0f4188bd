"""The results outbox in the ledger (db/ledger/outbox.py, migration 0007): queued once per
DICOM scan, version and destination; claimed by one process at a time; each result
guarded by its claim. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import inspect, update

import db
from db import ledger
from db.migrate import _config
from db.models import Scan

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 14, 9, 0, tzinfo=UTC)
PACS = "PACS@pacs:104"
FOLDER = "dir:/srv/results"


def seed(url: str, kinds: tuple[str, ...]) -> list[int]:
    ids = []
    with db.session_scope(url) as s:
        ledger.ensure_model_version(s, "v1")
        for i, kind in enumerate(kinds):
            row = ledger.record_received(
                s, path=f"/drop/{i}", size_bytes=1, mtime_ns=1, sha256=f"{i:064d}", now=NOW
            )
            ids.append(row.id)
            s.execute(update(Scan).where(Scan.id == row.id).values(kind=kind))
    return ids


def test_reports_are_queued_once_per_dicom_scan_and_destination(any_url: str) -> None:
    dicom, image = seed(any_url, ("dicom", "image"))
    with db.session_scope(any_url) as s:
        assert ledger.queue_results(s, [dicom, image], "v1", [PACS, FOLDER], now=NOW) == 2
        assert ledger.queue_results(s, [dicom], "v1", [PACS, FOLDER], now=NOW) == 0
        summary = ledger.outbox_summary(s)
    assert summary.counts == {"pending": 2, "sent": 0, "failed": 0}
    assert summary.oldest_pending_since == NOW


def test_a_row_is_claimed_by_one_process_until_its_lease_ends(any_url: str) -> None:
    [scan] = seed(any_url, ("dicom",))
    with db.session_scope(any_url) as s:
        ledger.queue_results(s, [scan], "v1", [PACS], now=NOW)
    with db.session_scope(any_url) as s:
        [row] = ledger.claim_due(s, [PACS], "A", lease_seconds=60, now=NOW)
        outbox_id = row.id
    with db.session_scope(any_url) as s:
        assert ledger.claim_due(s, [PACS], "B", lease_seconds=60, now=NOW) == []
        assert ledger.claim_due(s, [FOLDER], "B", lease_seconds=60, now=NOW) == []
    later = NOW + timedelta(seconds=61)  # A's lease ended (it died mid-send)
    with db.session_scope(any_url) as s:
        [again] = ledger.claim_due(s, [PACS], "B", lease_seconds=60, now=later)
        assert again.id == outbox_id
    with db.session_scope(any_url) as s:
        assert not ledger.mark_sent(s, outbox_id, "A", sop_class_uid="1.2", sop_instance_uid="3")
        retry_at = later + timedelta(seconds=30)
        assert ledger.mark_retry(s, outbox_id, "B", error="down", next_attempt_at=retry_at)
    with db.session_scope(any_url) as s:
        assert ledger.claim_due(s, [PACS], "C", lease_seconds=60, now=later) == []
        [row] = ledger.claim_due(s, [PACS], "C", lease_seconds=60, now=retry_at)
        assert (row.attempts, row.last_error) == (1, "down")
        assert ledger.mark_sent(s, outbox_id, "C", sop_class_uid="1.2", sop_instance_uid="3")
        assert not ledger.mark_failed(s, outbox_id, "C", error="late")  # sent stays sent
        assert ledger.outbox_summary(s).counts == {"pending": 0, "sent": 1, "failed": 0}


def test_0007_downgrade_drops_the_outbox(any_url: str) -> None:
    cfg = _config(any_url)
    with db.get_engine(any_url).begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0006")
    with db.get_engine(any_url).connect() as conn:
        assert "result_outbox" not in inspect(conn).get_table_names()
    assert db.upgrade(any_url) == ("0006", db.head_revision())

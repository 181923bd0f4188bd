"""The table of allowed status moves and the one guarded UPDATE that makes them: a move
outside the table is refused before any SQL, a move whose row is no longer in its source
status (or no longer held) changes nothing, and each target stamps its own columns.
SQLite only: no services needed."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

import db
from db import ledger
from db.models import FAILED, PROCESSING, QUEUED, SCORED, SKIPPED, STATUSES, TERMINAL, Scan

pytestmark = pytest.mark.fast  # no service, no data, no model

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)

EXPECTED_MOVES = {
    (QUEUED, PROCESSING),
    (QUEUED, QUEUED),
    (PROCESSING, PROCESSING),
    (PROCESSING, QUEUED),
    (PROCESSING, SCORED),
    (PROCESSING, SKIPPED),
    (PROCESSING, FAILED),
    (SCORED, QUEUED),
    (SKIPPED, QUEUED),
    (FAILED, QUEUED),
}
ALL_PAIRS = list(itertools.product(STATUSES, STATUSES))


@pytest.fixture
def url(sqlite_url: str) -> str:
    """These tests' name for a fresh SQLite ledger."""
    return sqlite_url


def scan_in(url: str, status: str, token: str | None = None) -> int:
    """A scan in ``status`` (held under ``token`` when given)."""
    with db.session_scope(url) as s:
        scan_id = ledger.record_received(
            s, path=f"/drop/{status}-{token}.dcm", size_bytes=10, mtime_ns=1, sha256="a" * 64
        ).id
        s.execute(update(Scan).where(Scan.id == scan_id).values(status=status, claim_token=token))
    return scan_id


def row(url: str, scan_id: int) -> Scan:
    with db.session_scope(url, readonly=True) as s:
        found = s.get(Scan, scan_id)
        assert found is not None
        s.expunge(found)
        return found


def test_the_table_lists_exactly_the_moves_the_ledger_makes() -> None:
    assert set(ledger.MOVES) == EXPECTED_MOVES
    assert set(ledger.ALLOWED) == set(STATUSES)
    for source, targets in ledger.ALLOWED.items():
        assert targets == {to for (s, to) in EXPECTED_MOVES if s == source}
    for status in TERMINAL:  # an outcome is final, but for a rescore
        assert ledger.ALLOWED[status] == {QUEUED}
    assert all(reason for reason in ledger.MOVES.values())


@pytest.mark.parametrize(("source", "target"), [p for p in ALL_PAIRS if p not in EXPECTED_MOVES])
def test_a_move_outside_the_table_is_refused_and_changes_nothing(
    url: str, source: str, target: str
) -> None:
    scan_id = scan_in(url, source, token="t")
    with db.session_scope(url) as s, pytest.raises(ledger.DisallowedMoveError) as caught:
        ledger.move(s, [scan_id], source, target, now=LATER, token="t")
    assert f"{source} -> {target} is not allowed" in str(caught.value)
    assert "MOVES" in str(caught.value)
    assert row(url, scan_id).status == source


@pytest.mark.parametrize(("source", "target"), sorted(EXPECTED_MOVES))
def test_every_allowed_move_is_made_and_stamps_its_target(
    url: str, source: str, target: str
) -> None:
    scan_id = scan_in(url, source, token="t")
    with db.session_scope(url) as s:
        assert ledger.move(s, [scan_id], source, target, now=LATER, token="t") == [scan_id]
    got = row(url, scan_id)
    assert got.status == target
    assert got.updated_at == LATER
    if target == PROCESSING:
        assert got.started_at == LATER
        assert got.claim_token == "t"
    elif target == QUEUED:
        assert (got.queued_at, got.claim_token) == (LATER, None)
    else:
        assert (got.finished_at, got.claim_token) == (LATER, None)


def test_a_source_listed_with_a_disallowed_one_is_refused_too(url: str) -> None:
    scan_id = scan_in(url, QUEUED)
    with db.session_scope(url) as s, pytest.raises(ledger.DisallowedMoveError):
        ledger.move(s, [scan_id], (PROCESSING, SCORED), PROCESSING, now=LATER)
    assert row(url, scan_id).status == QUEUED


def test_an_unknown_status_is_refused(url: str) -> None:
    scan_id = scan_in(url, QUEUED)
    with db.session_scope(url) as s, pytest.raises(ledger.DisallowedMoveError):
        ledger.move(s, [scan_id], QUEUED, "done", now=LATER)
    with pytest.raises(ledger.DisallowedMoveError):
        ledger.check_move(["done"], QUEUED)


def test_a_row_no_longer_in_its_source_status_is_left_alone(url: str) -> None:
    scan_id = scan_in(url, SCORED)
    with db.session_scope(url) as s:
        assert ledger.move(s, [scan_id], PROCESSING, FAILED, now=LATER, reason="x") == []
    got = row(url, scan_id)
    assert (got.status, got.reason) == (SCORED, None)


def test_a_claim_held_by_another_token_is_left_alone(url: str) -> None:
    mine, theirs = scan_in(url, PROCESSING, token="mine"), scan_in(url, PROCESSING, token="b")
    with db.session_scope(url) as s:
        moved = ledger.move(s, [theirs, mine], PROCESSING, SKIPPED, now=LATER, token="mine")
    assert moved == [mine]
    assert (row(url, mine).status, row(url, theirs).status) == (SKIPPED, PROCESSING)
    assert row(url, theirs).claim_token == "b"


def test_extra_guards_and_values_are_applied(url: str) -> None:
    scan_id = scan_in(url, FAILED)
    with db.session_scope(url) as s:
        refused = ledger.move(
            s, [scan_id], FAILED, QUEUED, now=LATER, where=[Scan.attempts == 7], attempts=0
        )
        assert refused == []
        moved = ledger.move(
            s, [scan_id], FAILED, QUEUED, now=LATER, where=[Scan.attempts == 0], reason="again"
        )
    assert moved == [scan_id]
    got = row(url, scan_id)
    assert (got.status, got.reason, got.queued_at) == (QUEUED, "again", LATER)


def test_many_ids_are_moved_in_chunks(url: str) -> None:
    ids = [scan_in(url, QUEUED, token=str(i)) for i in range(3)]
    with db.session_scope(url) as s:
        s.execute(update(Scan).values(claim_token=None))
        assert ledger.move(s, [*ids, *ids, 10_000], QUEUED, QUEUED, now=LATER) == sorted(ids)
        assert ledger.move(s, [], QUEUED, QUEUED, now=LATER) == []


def test_finish_refuses_an_outcome_that_is_not_terminal(url: str) -> None:
    scan_id = scan_in(url, PROCESSING, token="t")
    with db.session_scope(url) as s, pytest.raises(AssertionError):
        ledger.finish(s, scan_id, "t", ledger.Outcome(QUEUED, "not an outcome"))
    assert row(url, scan_id).status == PROCESSING

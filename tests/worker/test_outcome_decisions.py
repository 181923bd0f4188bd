"""The scoring path's decisions that need no database (worker/scoring/outcomes.py) and the
retry policy's rules (worker/scoring/retry.py), as plain functions: no service, no model."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from db.models import FAILED, SKIPPED, Scan
from worker.errors import (
    BrokerUnavailableError,
    CorruptFileError,
    DatabaseUnavailableError,
    DecoderCrashedError,
    FileUnavailableError,
    InputError,
    ModelError,
    RetriedError,
    ScanRetryError,
    TransientError,
    from_dict,
)
from worker.scoring.outcomes import attempt_cap_outcome, duplicate_outcome, grade_work
from worker.scoring.retry import MODEL, SERVER, batch_retry
from worker.scoring.work import ScanWork

pytestmark = pytest.mark.fast


def _work(attempts: int = 1, scores: list[float] | None = None) -> ScanWork:
    scan = Scan(id=7, path="/drop/a.dcm", sha256="ab" * 32, attempts=attempts)
    work = ScanWork(scan)
    work.frame_scores = [(i, s) for i, s in enumerate(scores or [])]
    work.crashed = "/drop/a.dcm: the decoder process was killed by signal SIGSEGV"
    return work


def test_a_crash_is_retried_below_the_attempt_cap_and_fails_at_it() -> None:
    assert attempt_cap_outcome(_work(attempts=2), max_attempts=3) is None
    outcome = attempt_cap_outcome(_work(attempts=3), max_attempts=3)
    assert outcome is not None and outcome.status == FAILED
    assert "SIGSEGV" in outcome.reason and "after 3 attempts" in outcome.reason


def test_a_duplicate_names_its_original() -> None:
    original = Scan(id=3, path="/drop/first.dcm")
    outcome = duplicate_outcome(_work().scan, original, "content")
    assert outcome.status == SKIPPED and outcome.duplicate_of == 3
    assert "scan 3 (/drop/first.dcm): same content" in outcome.reason


class _Grading:
    def summarise(self, scores: list[float], defects: Any, gate: Any, names: Any) -> Any:
        if not scores:
            raise InputError("no frame score to grade")
        skip = "not an ultrasound image" if gate and max(gate) > 0.5 else None
        return SimpleNamespace(skip_reason=skip, score=sum(scores) / len(scores))


def _context() -> Any:
    return SimpleNamespace(grading=_Grading(), scorer=SimpleNamespace(defect_names=()))


def test_grading_before_the_transaction_sets_a_summary_or_the_outcome_that_replaces_it() -> None:
    scored = _work(scores=[80.0, 90.0])
    grade_work(_context(), scored)
    assert scored.summary.score == 85.0 and scored.grade_outcome is None
    assert scored.outcome is None  # the write transaction decides (a duplicate wins)

    empty = _work(scores=[])
    grade_work(_context(), empty)
    assert empty.grade_outcome is not None and empty.grade_outcome.status == FAILED

    chart = _work(scores=[50.0])
    chart.frame_gate = {0: 0.9}
    grade_work(_context(), chart)
    assert chart.summary is None and chart.reason_class == "not_ultrasound"
    assert chart.grade_outcome is not None and chart.grade_outcome.status == SKIPPED


@pytest.mark.parametrize(
    ("error", "rule", "release"),
    [
        (DatabaseUnavailableError("down"), "transient", False),
        (BrokerUnavailableError("down"), "transient", False),
        (ModelError("weights"), "model", False),
        (TimeoutError("soft limit"), "time_limit", True),
        (RuntimeError("a bug"), "unexpected", True),
    ],
)
def test_each_batch_error_has_one_retry_rule(
    error: BaseException, rule: str, release: bool
) -> None:
    again = batch_retry(error, 0, (TimeoutError,))
    assert (again.rule, again.release) == (rule, release)
    limit = MODEL if rule == "model" else SERVER
    assert 0.8 * limit.base <= again.delay <= 1.2 * limit.base


def test_backoff_grows_and_stops_at_its_cap() -> None:
    assert SERVER.delay(30) <= SERVER.cap * 1.2
    assert SERVER.delay(3) > SERVER.delay(0) * 2


def test_the_tree_says_what_is_retried() -> None:
    assert issubclass(DecoderCrashedError, ScanRetryError)
    assert not issubclass(DecoderCrashedError, InputError)  # a crash is not "the file is bad"
    for cls in (DecoderCrashedError, TransientError, FileUnavailableError):
        assert issubclass(cls, RetriedError)
    assert not issubclass(InputError, RetriedError)


def test_errors_cross_the_pipe_as_the_same_class_with_their_context() -> None:
    sent = DecoderCrashedError("/drop/a.dcm: killed", path="/drop/a.dcm")
    back = from_dict(sent.to_dict())
    assert type(back) is DecoderCrashedError and str(back) == str(sent)
    assert back.path == "/drop/a.dcm"
    unknown = from_dict({"class": "SystemExit", "message": "subverted"})
    assert type(unknown) is CorruptFileError  # never a class outside the tree

"""db.qa.calibration: thresholds recovered from ratings made with known ones, the exact
search against a brute-force one, the split, the verdicts (pure), and build_calibration on
a seeded ledger (SQLite and PostgreSQL)."""

from __future__ import annotations

import bisect
import itertools
from datetime import date

import numpy as np
import pytest

import db
from db import reviews
from db.qa.agreement import GRADE_ORDER, weighted_kappa
from db.qa.calibration import (
    MIN_FIT,
    MIN_HELD_OUT,
    Thresholds,
    build_calibration,
    calibrate,
    is_held_out,
)
from db.reviews import RatedScan
from tests.helpers.ledger import Row, seed
from tests.helpers.ratings import graded, rate, rated

CURRENT = Thresholds(good=80.0, average=45.0)


def made_with(
    good: float, average: float, *, n: int = 400, seed_value: int = 1, noise: float = 0.04
) -> list[RatedScan]:
    """Scores spread over 0-100 on ``n`` scans; the reviewer grades them by ``good`` and
    ``average``, except for a few ratings (``noise``) far (over 10 points) from both cuts,
    given another grade. The model grades by the current 80/45."""
    rng = np.random.default_rng(seed_value)
    rows = []
    for i in range(n):
        score = round(float(rng.uniform(0, 100)), 2)
        grade = graded(score, good, average)
        far = abs(score - good) > 10 and abs(score - average) > 10
        if far and rng.random() < noise:
            grade = GRADE_ORDER[(GRADE_ORDER.index(grade) + 1) % 3]
        rows.append(rated(i, i, "ann", grade, score, graded(score, 80, 45)))
    return rows


def fit_scores(rows: list[RatedScan], share: float = 0.3, seed_value: int = 0) -> list[float]:
    return sorted(r.model_score for r in rows if not is_held_out(r.scan_id, share, seed_value))


def gap_around(scores: list[float], threshold: float) -> tuple[float, float]:
    """The neighbouring fit scores below and at-or-above ``threshold``."""
    k = bisect.bisect_left(scores, threshold)
    return scores[k - 1], scores[k]


@pytest.mark.fast
def test_recovers_the_thresholds_the_reviewer_used() -> None:
    rows = made_with(72, 41)
    result = calibrate(rows, CURRENT)
    assert result.proposed is not None
    scores = fit_scores(rows)
    low, high = gap_around(scores, 72)
    assert low < result.proposed.good <= high
    low, high = gap_around(scores, 41)
    assert low < result.proposed.average <= high
    assert result.verdict == "improves" and result.usable
    before, after = result.held_out_before, result.held_out_after
    assert after is not None and before.kappa is not None and after.kappa is not None
    assert after.ratings == before.ratings == len(rows) - len(scores)
    assert after.kappa > before.kappa + 0.1
    assert after.agreement is not None and before.agreement is not None
    assert after.agreement > before.agreement
    # the proposal is a round number inside its gap
    assert result.proposed.good == round(result.proposed.good, 2)


@pytest.mark.fast
def test_exact_search_finds_the_best_kappa_of_every_threshold_pair() -> None:
    rng = np.random.default_rng(4)
    rows = [
        rated(i, i, "ann", GRADE_ORDER[int(rng.integers(0, 3))], float(rng.integers(0, 40) * 2.5),
              "good")
        for i in range(60)
    ]  # fmt: skip
    result = calibrate(rows, CURRENT, held_out=0.3)
    assert result.proposed is not None and result.fit_after is not None
    fit = [r for r in rows if not is_held_out(r.scan_id, 0.3)]
    distinct = sorted({r.model_score for r in fit})
    cuts = [0.0] + [(a + b) / 2 for a, b in itertools.pairwise(distinct)] + [100.0]
    best = max(
        weighted_kappa([r.grade for r in fit], [graded(r.model_score, g, a) for r in fit]) or -1
        for i, a in enumerate(cuts)
        for g in cuts[i:]
    )
    assert result.fit_after.kappa == pytest.approx(best)


@pytest.mark.fast
def test_current_thresholds_kept_when_already_best() -> None:
    rows = made_with(80, 45, noise=0.0)
    result = calibrate(rows, CURRENT)
    assert result.proposed == CURRENT
    assert result.verdict == "unchanged" and not result.usable
    assert "nothing to change" in result.message


@pytest.mark.fast
def test_no_gain_on_held_out_ratings_is_said_and_not_usable() -> None:
    # fit scans were graded by 60/30, held-out ones by the current 80/45: what the search
    # learns does worse on the held-out ratings than the current thresholds
    rng = np.random.default_rng(2)
    rows = []
    for i in range(200):
        score = round(float(rng.uniform(0, 100)), 2)
        good, average = (80, 45) if is_held_out(i, 0.3) else (60, 30)
        rows.append(rated(i, i, "ann", graded(score, good, average), score, "good"))
    result = calibrate(rows, CURRENT)
    assert result.proposed is not None and result.proposed != CURRENT
    assert result.verdict == "no_gain" and not result.usable
    assert "does not do better" in result.message
    assert result.held_out_before.kappa == pytest.approx(1.0)


@pytest.mark.fast
def test_too_few_ratings_give_no_proposal() -> None:
    rows = made_with(72, 41, n=25)
    result = calibrate(rows, CURRENT)
    fit = len(fit_scores(rows))
    assert fit < MIN_FIT or len(rows) - fit < MIN_HELD_OUT
    assert (result.verdict, result.proposed, result.held_out_after) == ("too_few", None, None)
    assert f"at least {MIN_FIT} and {MIN_HELD_OUT}" in result.message
    assert result.fit_before.ratings == fit


@pytest.mark.fast
def test_no_signal_first_is_poor_whatever_the_thresholds() -> None:
    rows = made_with(72, 41)
    # high scores whose first defect is no_signal, rated poor: no threshold pair can grade
    # them otherwise, so they neither move the proposal nor count as misses
    blank = [
        rated(1000 + i, 1000 + i, "ann", "poor", 95.0, "poor", model_defects=["no_signal"])
        for i in range(40)
    ]
    plain = calibrate(rows, CURRENT)
    mixed = calibrate(rows + blank, CURRENT)
    assert mixed.proposed == plain.proposed
    assert mixed.fit_after is not None and plain.fit_after is not None
    extra = mixed.fit_after.ratings - plain.fit_after.ratings
    assert extra > 0
    assert mixed.fit_after.agreement == pytest.approx(
        (plain.fit_after.agreement * plain.fit_after.ratings + extra) / mixed.fit_after.ratings
    )


@pytest.mark.fast
def test_split_is_by_scan_fixed_and_of_the_share() -> None:
    held = [is_held_out(i, 0.3, 0) for i in range(20_000)]
    assert 0.29 < sum(held) / len(held) < 0.31
    assert held == [is_held_out(i, 0.3, 0) for i in range(20_000)]
    assert held != [is_held_out(i, 0.3, 1) for i in range(20_000)]
    # a scan rated by several reviewers goes to one part with all its ratings
    rows = [rated(10 * s + k, s, name, "good", 90, "good")
            for s in range(80) for k, name in enumerate(("ann", "bob"))]  # fmt: skip
    result = calibrate(rows, CURRENT)
    assert result.fit_before.ratings == 2 * result.fit_before.scans
    assert result.held_out_before.ratings == 2 * result.held_out_before.scans


@pytest.mark.fast
def test_one_model_version_at_a_time() -> None:
    rows = [*made_with(72, 41, n=30), rated(999, 999, "ann", "good", 90, "good", version="v2")]
    with pytest.raises(ValueError, match="one model version at a time"):
        calibrate(rows, CURRENT)
    with pytest.raises(ValueError, match="held-out share"):
        calibrate(made_with(72, 41, n=30), CURRENT, held_out=1.0)


@pytest.mark.integration
def test_build_calibration_reads_the_ledger(any_url: str) -> None:
    rng = np.random.default_rng(9)
    scores = [round(float(rng.uniform(0, 100)), 1) for _ in range(60)]
    rows = [Row(day=date(2026, 3, 1), score=s, station="US-1") for s in scores]
    rows.append(
        Row(day=date(2026, 3, 1), score=92.0, defects=(("no_signal", 0.9, 1.0),))
    )  # a blank capture: graded poor whatever its score
    rows += [Row(day=date(2026, 3, 1), score=s, version="v0") for s in scores[:5]]
    ids = seed(any_url, rows)
    rate(any_url, "ann", {i: graded(score, 72, 41) for i, score in zip(ids, scores, strict=False)})
    rate(any_url, "ann", {ids[60]: "poor"})
    rate(any_url, "bob", dict.fromkeys(ids[-5:]))  # accepts v0's results as shown
    with db.session_scope(any_url, readonly=True) as s:
        result, counts = build_calibration(s, CURRENT)
        blank = reviews.rated_scans(s, model_version="v1")
        missing, _ = build_calibration(s, CURRENT, model_version="v9")
    assert counts == {"v1": 61, "v0": 5}
    assert missing is None
    assert [r.model_first_defect for r in blank if r.scan_id == ids[60]] == ["no_signal"]
    assert result is not None and result.model_version == "v1"
    assert result.fit_before.ratings + result.held_out_before.ratings == 61
    assert result.proposed is not None and result.verdict == "improves"
    fit = sorted(s for i, s in zip(ids, scores, strict=False) if not is_held_out(i, 0.3))
    low, high = gap_around(fit, 72)
    assert low < result.proposed.good <= high

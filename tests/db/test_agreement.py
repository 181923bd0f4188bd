"""db.qa.agreement: figures of a small rated set worked out by hand, the pairs between
reviewers, the bootstrap, and the degenerate cases (pure: no database)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import pytest
from scipy.stats import spearmanr

from db.qa.agreement import (
    GRADE_ORDER,
    agreement_report,
    grade_rank,
    linear_kappa,
    weighted_kappa,
)
from db.reviews import RatedScan
from tests.helpers.ratings import rated

pytestmark = pytest.mark.fast


# Six scans, two reviewers; A rated all six, B scans 1, 3, 4 and 5 (10 ratings).
#
#  scan station score model     model defects | A grade  A defects | B grade  B defects
#   1   US-1    90    good      -             | good     -         | good     -
#   2   US-1    85    good      -             | average  noise     |
#   3   US-1    60    average   noise         | average  noise     | good     -
#   4   US-2    50    average   blur          | poor     blur      | average  blur, noise
#   5   US-2    30    poor      low_gain      | poor     low_gain  | poor     -
#   6   (none)  20    poor      no_signal     | average  -         |
def hand_rows() -> list[RatedScan]:
    return [
        rated(1, 1, "A", "good", 90, "good"),
        rated(2, 2, "A", "average", 85, "good", defects=["noise"]),
        rated(3, 3, "A", "average", 60, "average", defects=["noise"], model_defects=["noise"]),
        rated(4, 4, "A", "poor", 50, "average", defects=["blur"], model_defects=["blur"],
              station="US-2"),
        rated(5, 5, "A", "poor", 30, "poor", defects=["low_gain"], model_defects=["low_gain"],
              station="US-2"),
        rated(6, 6, "A", "average", 20, "poor", model_defects=["no_signal"], station=None),
        rated(7, 1, "B", "good", 90, "good", agrees=True),
        rated(8, 3, "B", "good", 60, "average", model_defects=["noise"]),
        rated(9, 4, "B", "average", 50, "average", defects=["blur", "noise"],
              model_defects=["blur"], station="US-2"),
        rated(10, 5, "B", "poor", 30, "poor", model_defects=["low_gain"], station="US-2"),
    ]  # fmt: skip


def test_hand_example_model_against_reviewers() -> None:
    report = agreement_report(hand_rows(), by="station", rounds=0)
    g = report.group("v1")
    assert g is not None
    assert (g.ratings, g.scans, g.accepted) == (10, 6, 1)
    # Same grade on A1, A3, A5, B1, B4, B5: 6 of 10.
    assert g.agreement.value == pytest.approx(0.6) and g.agreement.n == 10
    # Rows reviewer good/average/poor, columns model good/average/poor.
    assert g.confusion == ((2, 1, 0), (1, 2, 1), (0, 1, 2))
    # Linear weights: 4 one-grade misses of 10 -> observed disagreement 4 * 0.5 / 10 = 0.2.
    # Marginals (0.3, 0.4, 0.3) both ways: expected disagreement
    #   0.5 * (4 * 0.3 * 0.4) + 1.0 * (2 * 0.3 * 0.3) = 0.24 + 0.18 = 0.42,
    # kappa = 1 - 0.2 / 0.42 = 11/21.
    assert g.kappa.value == pytest.approx(11 / 21)
    # Spearman: score ranks 20:1, 30:2.5, 50:4.5, 60:6.5, 85:8, 90:9.5; grade ranks poor 2,
    # average 5.5, good 9. Deviations from 5.5 give sum dx*dy = 56, sum dx^2 = 80.5,
    # sum dy^2 = 6 * 3.5^2 = 73.5.
    assert g.spearman.value == pytest.approx(56 / math.sqrt(80.5 * 73.5))
    assert g.spearman.value == pytest.approx(
        spearmanr([90, 85, 60, 50, 30, 20, 90, 60, 50, 30], [2, 1, 1, 0, 0, 1, 2, 2, 1, 0])[0]
    )
    # Defects (both / model only / reviewer only):
    #   noise: A3 / B3 / A2, B4 -> precision 1/2, recall 1/3
    #   blur: A4, B4 / - / -     -> 1, 1
    #   low_gain: A5 / B5 / -    -> 1/2, 1
    #   no_signal: - / A6 / -    -> precision 0, recall undefined (no reviewer saw it)
    found = {d.defect: d for d in g.defects}
    assert set(found) == {"noise", "blur", "low_gain", "no_signal"}
    assert (found["noise"].tp, found["noise"].fp, found["noise"].fn) == (1, 1, 2)
    assert found["noise"].precision.value == pytest.approx(0.5)
    assert found["noise"].recall.value == pytest.approx(1 / 3)
    assert found["noise"].recall.n == 3
    assert found["blur"].precision.value == 1.0 and found["blur"].recall.value == 1.0
    assert found["low_gain"].precision.value == pytest.approx(0.5)
    assert found["low_gain"].recall.value == 1.0
    assert found["no_signal"].precision.value == 0.0
    assert found["no_signal"].recall.value is None
    assert found["no_signal"].recall.reason == "no reviewer saw no_signal"


def test_hand_example_per_reviewer_and_station() -> None:
    report = agreement_report(hand_rows(), by="station", rounds=0)
    a, b = report.group("v1", "reviewer", "A"), report.group("v1", "reviewer", "B")
    assert a is not None and b is not None
    # A: 3 of 6 agree; marginals reviewer (1/6, 3/6, 2/6), model (1/3, 1/3, 1/3);
    # observed 3 * 0.5 / 6 = 0.25; expected 0.5 * (1/3) * (9/6) + (1/3) * (3/6) = 5/12;
    # kappa = 1 - 0.25 / (5/12) = 0.4.
    assert a.agreement.value == pytest.approx(0.5)
    assert a.kappa.value == pytest.approx(0.4)
    # B: 3 of 4; reviewer (2/4, 1/4, 1/4), model (1/4, 2/4, 1/4); observed 0.125;
    # expected 0.5 * 0.5 + 0.1875 = 0.4375; kappa = 1 - 0.125 / 0.4375 = 5/7.
    assert b.agreement.value == pytest.approx(0.75)
    assert b.kappa.value == pytest.approx(5 / 7)
    stations = {g.group: g for g in report.groups if g.dimension == "station"}
    assert list(stations) == ["US-1", "US-2", None]  # not recorded last
    assert (stations["US-1"].ratings, stations["US-1"].scans) == (5, 3)
    assert stations["US-2"].agreement.value == pytest.approx(3 / 4)  # A4 no, A5 B4 B5 yes
    assert stations[None].agreement.value == 0.0


def test_hand_example_between_reviewers() -> None:
    report = agreement_report(hand_rows(), by="station", rounds=0)
    overall = report.between_reviewers[0]
    # Scans 1, 3, 4, 5 carry a pair: good/good, average/good, poor/average, poor/poor.
    assert (overall.dimension, overall.pairs, overall.scans) == ("overall", 4, 4)
    assert overall.agreement.value == pytest.approx(0.5)
    # Symmetric table: marginals (0.375, 0.25, 0.375); observed 2 * 0.5 / 4 = 0.25;
    # expected 0.5 * (4 * 0.375 * 0.25) + 1.0 * (2 * 0.375 ** 2) = 0.46875;
    # kappa = 1 - 0.25 / 0.46875 = 7/15.
    assert overall.kappa.value == pytest.approx(7 / 15)
    assert overall.confusion == ((1.0, 0.5, 0.0), (0.5, 0.0, 0.5), (0.0, 0.5, 1.0))
    by_station = {p.group: p.pairs for p in report.between_reviewers if p.dimension == "station"}
    assert by_station == {"US-1": 2, "US-2": 2}


def reference_kappa(first: Sequence[str], second: Sequence[str]) -> float:
    """Weighted kappa straight from its definition, one cell at a time:
    kappa = 1 - sum_ij w_ij O_ij / sum_ij w_ij E_ij, w_ij = |i - j| / 2, O the observed
    shares, E_ij = (row share i) * (column share j)."""
    n = len(first)
    observed = [[0.0] * 3 for _ in range(3)]
    for a, b in zip(first, second, strict=True):
        observed[GRADE_ORDER.index(a)][GRADE_ORDER.index(b)] += 1 / n
    rows = [sum(observed[i]) for i in range(3)]
    cols = [sum(observed[i][j] for i in range(3)) for j in range(3)]
    d_obs = sum(abs(i - j) / 2 * observed[i][j] for i in range(3) for j in range(3))
    d_exp = sum(abs(i - j) / 2 * rows[i] * cols[j] for i in range(3) for j in range(3))
    return 1 - d_obs / d_exp


def test_kappa_matches_its_definition_and_known_values() -> None:
    rng = np.random.default_rng(5)
    for _ in range(50):
        n = int(rng.integers(5, 40))
        a = [GRADE_ORDER[i] for i in rng.integers(0, 3, n)]
        b = [GRADE_ORDER[i] for i in rng.integers(0, 3, n)]
        assert weighted_kappa(a, b) == pytest.approx(reference_kappa(a, b))
    assert weighted_kappa(["good", "poor"], ["good", "poor"]) == 1.0
    # always exactly wrong, good against poor: observed 1, expected 0.5 -> kappa -1
    assert weighted_kappa(["good", "poor"], ["poor", "good"]) == pytest.approx(-1.0)
    # model one grade off on every rating of two: observed 0.5, expected 0.5 + ... = 0.75
    assert weighted_kappa(["good", "average"], ["average", "poor"]) == pytest.approx(
        reference_kappa(["good", "average"], ["average", "poor"])
    )
    assert linear_kappa(np.zeros((3, 3))) != linear_kappa(np.zeros((3, 3)))  # NaN: no ratings


def test_spearman_ties_match_scipy() -> None:
    rng = np.random.default_rng(11)
    rows = [
        rated(i, i // 2, f"r{i % 3}", GRADE_ORDER[int(rng.integers(0, 3))],
              float(rng.integers(0, 12) * 5), "good")
        for i in range(60)
    ]  # fmt: skip
    g = agreement_report(rows, rounds=0).group("v1")
    assert g is not None
    expected = spearmanr([r.model_score for r in rows], [grade_rank(r.grade) for r in rows])[0]
    assert g.spearman.value == pytest.approx(expected)


def synthetic(n_scans: int = 120, seed: int = 3) -> list[RatedScan]:
    """Scans of a hidden quality q: two or three reviewers per scan mostly grade q by 75/40;
    model v1 scores q plus noise, v2 q + 4 plus noise, each graded by 80/45. Each rating
    appears once beside each version, on two stations."""
    rng = np.random.default_rng(seed)
    rows, rid = [], 0
    for scan in range(n_scans):
        q = float(np.clip(rng.normal(60, 20), 0, 100))
        truth = "good" if q >= 75 else "average" if q >= 40 else "poor"
        ratings = []
        for reviewer in ("ann", "bob", "cy")[: 2 + scan % 2]:
            grade = truth if rng.random() > 0.15 else GRADE_ORDER[int(rng.integers(0, 3))]
            ratings.append((rid, reviewer, grade))
            rid += 1
        for version, shift in (("v1", 0.0), ("v2", 4.0)):
            score = float(np.clip(q + shift + rng.normal(0, 6), 0, 100))
            model = "good" if score >= 80 else "average" if score >= 45 else "poor"
            rows += [
                rated(review_id, scan, reviewer, grade, score, model,
                      station=f"US-{scan % 2 + 1}", version=version)
                for review_id, reviewer, grade in ratings
            ]  # fmt: skip
    return rows


def test_bootstrap_intervals_contain_the_figure_and_repeat_with_the_seed() -> None:
    rows = synthetic()
    first = agreement_report(rows, by="station", rounds=400, seed=7)
    again = agreement_report(rows, by="station", rounds=400, seed=7)
    other = agreement_report(rows, by="station", rounds=400, seed=8)
    assert first == again
    assert first.to_json() != other.to_json()
    for g in first.groups:
        for f in (g.agreement, g.kappa, g.spearman):
            assert f.value is not None and f.low is not None and f.high is not None
            assert f.low <= f.value <= f.high, (g.dimension, g.group, f)
            assert f.high - f.low < 0.5
    for p in first.between_reviewers:
        assert p.agreement.low is not None and p.agreement.high is not None
        assert p.agreement.value is not None
        assert p.agreement.low <= p.agreement.value <= p.agreement.high
    # a group's interval does not depend on the other groups: the v1 station US-1 group of
    # only its own rows gives the same figures
    us1 = [r for r in rows if r.station == "US-1"]
    alone = agreement_report(us1, by="station", rounds=400, seed=7).group("v1", "station", "US-1")
    assert alone == first.group("v1", "station", "US-1")
    json.dumps(first.to_json())  # plain JSON: no NaN, no numpy types
    assert "NaN" not in json.dumps(first.to_json())


def test_versions_are_never_pooled() -> None:
    rows = synthetic(40)
    report = agreement_report(rows, rounds=0)
    assert list(report.model_versions) == ["v1", "v2"]
    overall = [g for g in report.groups if g.dimension == "overall"]
    assert [(g.model_version, g.ratings) for g in overall] == [
        ("v1", report.model_versions["v1"]),
        ("v2", report.model_versions["v2"]),
    ]
    v1_only = agreement_report([r for r in rows if r.model_version == "v1"], rounds=0)
    assert v1_only.group("v1") == report.group("v1")


def test_pairs_count_each_unordered_pair_of_a_scan_once() -> None:
    # scan 1: three reviewers -> 3 pairs; scan 2: one reviewer -> none; scan 3: two -> 1.
    # Each rating appears beside two model versions: the pairs are counted once.
    rows = []
    for version in ("v1", "v2"):
        rows += [
            rated(1, 1, "ann", "good", 90, "good", version=version),
            rated(2, 1, "bob", "good", 90, "good", version=version),
            rated(3, 1, "cy", "poor", 90, "good", version=version),
            rated(4, 2, "ann", "poor", 10, "poor", version=version),
            rated(5, 3, "bob", "average", 50, "average", version=version),
            rated(6, 3, "cy", "average", 50, "average", version=version),
        ]
    report = agreement_report(rows, rounds=0)
    assert (report.ratings, report.scans) == (6, 3)
    overall = report.between_reviewers[0]
    assert (overall.pairs, overall.scans) == (4, 2)
    # same grade: ann-bob (scan 1) and bob-cy (scan 3): 2 of 4
    assert overall.agreement.value == pytest.approx(0.5)
    per = {p.group: p.pairs for p in report.between_reviewers if p.dimension == "reviewer"}
    assert per == {"ann": 2, "bob": 3, "cy": 3}


def test_one_grade_everywhere_gives_no_kappa_and_no_spearman() -> None:
    rows = [rated(i, i, "ann", "good", 80 + i, "good") for i in range(5)]
    report = agreement_report(rows, rounds=50)
    g = report.group("v1")
    assert g is not None
    assert g.agreement.value == 1.0
    assert g.kappa.value is None and g.kappa.low is None
    assert g.kappa.reason is not None and "'good'" in g.kappa.reason
    assert g.spearman.value is None and g.spearman.reason == "every reviewer grade is 'good'"
    assert report.between_reviewers == ()
    assert "NaN" not in json.dumps(report.to_json())


def test_degenerate_sets() -> None:
    single = agreement_report([rated(1, 1, "ann", "poor", 10, "average")], rounds=20)
    g = single.group("v1")
    assert g is not None
    assert g.agreement.value == 0.0 and g.agreement.low == 0.0 and g.agreement.high == 0.0
    assert g.spearman.value is None and g.spearman.reason == "needs at least two ratings"
    # model and reviewer each keep to their own single grade: kappa is defined (0)
    apart = [rated(i, i, "ann", "poor", 50, "average") for i in range(4)]
    k = agreement_report(apart, rounds=0).group("v1")
    assert k is not None and k.kappa.value == pytest.approx(0.0)
    assert k.spearman.reason == "every reviewer grade is 'poor'"
    flat = [rated(i, i, "ann", g, 50, "average") for i, g in enumerate(GRADE_ORDER)]
    f = agreement_report(flat, rounds=0).group("v1")
    assert f is not None and f.spearman.reason == "every model score is the same"
    empty = agreement_report([], rounds=100)
    assert (empty.ratings, empty.groups, empty.between_reviewers) == (0, (), ())
    # a version without a defect head: no defect figures, its empty list is "not judged"
    blind = [rated(i, i, "ann", "poor", 10, "poor", defects=["noise"], judged=False)
             for i in range(3)]  # fmt: skip
    b = agreement_report(blind, rounds=0).group("v1")
    assert b is not None and (b.defect_ratings, b.defects) == (0, ())
    no_rounds = agreement_report(hand_rows(), rounds=0).group("v1")
    assert no_rounds is not None and no_rounds.kappa.low is None
    with pytest.raises(ValueError, match="grouping"):
        agreement_report(hand_rows(), by="body_part")
    with pytest.raises(ValueError, match="rounds"):
        agreement_report(hand_rows(), rounds=-1)

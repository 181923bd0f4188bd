"""Drift alerts: a seeded drop fires, noise does not; the tests' p-values; the CLI's exit
code for cron and monitoring."""

from __future__ import annotations

import json
import random
from datetime import date, timedelta
from typing import Any

import pytest
from scipy.stats import ttest_ind

import db
from db.qa.drift import DriftRule, check_drift
from db.qa.stats import WindowStats, fisher_rise_p, welch_drop_p
from tests.helpers.ledger import Row, bulk_seed
from worker.cli import main

UNTIL = date(2025, 6, 30)
RECENT = [UNTIL - timedelta(days=k) for k in range(7)]  # the default recent window
BASELINE = [UNTIL - timedelta(days=7 + k) for k in range(28)]  # the 28 days before
PROBES = ("C1-6", "L2-9", "C5-1")  # shared by every station


def station_rows(
    rng: random.Random,
    station: str,
    *,
    base: tuple[float, float],
    recent: tuple[float, float] | list[float],
    per_base_day: int = 4,
    per_recent_day: int = 6,
) -> list[Row]:
    """Scores ~ N(mean, sd) per window; ``recent`` may also be a list of exact scores."""
    rows = [
        Row(day, round(min(100.0, max(0.0, rng.gauss(*base))), 2), station=station,
            operator=f"op-{station}", transducer=rng.choice(PROBES))
        for day in BASELINE
        for _ in range(per_base_day)
    ]  # fmt: skip
    if isinstance(recent, list):
        rows += [
            Row(
                RECENT[i % 7],
                s,
                station=station,
                operator=f"op-{station}",
                transducer=rng.choice(PROBES),
            )
            for i, s in enumerate(recent)
        ]
    else:
        rows += [
            Row(day, round(min(100.0, max(0.0, rng.gauss(*recent))), 2), station=station,
                operator=f"op-{station}", transducer=rng.choice(PROBES))
            for day in RECENT
            for _ in range(per_recent_day)
        ]  # fmt: skip
    return rows


def drift(url: str, **rule: Any) -> list[tuple[str | None, str]]:
    with db.session_scope(url, readonly=True) as s:
        result = check_drift(
            s,
            ["station"],
            until=UNTIL,
            rule=DriftRule(**rule),
            model_version="v1",
        )
    return [(a.group, a.metric) for a in result.alerts]


# --- statistics -------------------------------------------------------------------------


def test_welch_matches_scipy_on_raw_scores() -> None:
    rng = random.Random(3)
    base = [rng.gauss(75, 9) for _ in range(120)]
    recent = [rng.gauss(70, 14) for _ in range(40)]

    def stats(xs: list[float]) -> WindowStats:
        m = sum(xs) / len(xs)
        return WindowStats(len(xs), m, sum((x - m) ** 2 for x in xs) / (len(xs) - 1), 0)

    expected = ttest_ind(recent, base, equal_var=False, alternative="less").pvalue
    assert welch_drop_p(stats(base), stats(recent)) == pytest.approx(expected, rel=1e-9)


def test_fisher_by_hand() -> None:
    # 3 of 5 recent scans poor, none of 5 before: P(X >= 3) for X ~ hypergeometric
    # (10 scans, 3 poor, 5 drawn) = C(3,3) C(7,2) / C(10,5) = 21 / 252
    p = fisher_rise_p(WindowStats(5, 70, 1, 0), WindowStats(5, 50, 1, 3))
    assert p == pytest.approx(21 / 252)


def test_rule_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="p-value"):
        DriftRule(p_value=0)
    with pytest.raises(ValueError, match="at least 1 day"):
        DriftRule(recent_days=0)
    assert DriftRule().windows(UNTIL) == (date(2025, 5, 27), date(2025, 6, 24), UNTIL)


# --- on the databases -----------------------------------------------------------------------


@pytest.mark.integration
def test_seeded_drop_fires_and_steady_stations_do_not(any_url: str) -> None:
    rng = random.Random(11)
    rows = station_rows(rng, "S-DROP", base=(75, 8), recent=(60, 8))
    for k in range(4):
        rows += station_rows(rng, f"S-STEADY-{k}", base=(75, 8), recent=(75, 8))
    bulk_seed(any_url, rows)
    assert drift(any_url) == [("S-DROP", "mean score")]
    with db.session_scope(any_url, readonly=True) as s:
        result = check_drift(s, ["station", "operator"], until=UNTIL, model_version="v1")
    assert {(a.dimension, a.group) for a in result.alerts} == {
        ("station", "S-DROP"), ("operator", "op-S-DROP")
    }  # fmt: skip
    assert result.tests == 20  # 10 groups x 2 tests: Bonferroni over all of them
    [alert] = [a for a in result.alerts if a.dimension == "station"]
    assert alert.baseline_scans == 112 and alert.recent_scans == 42
    assert alert.change < -10 and alert.p_value < alert.threshold == pytest.approx(0.01 / 20)
    assert "Station S-DROP: mean score fell from 7" in alert.message("Station")
    assert {c.group: c.outcome for c in result.checks if c.dimension == "station"} == {
        "S-DROP": "alert", **{f"S-STEADY-{k}": "ok" for k in range(4)}
    }  # fmt: skip


@pytest.mark.integration
def test_noise_small_drops_and_small_groups_do_not_fire(any_url: str) -> None:
    rng = random.Random(5)
    rows: list[Row] = []
    for k in range(12):  # the same distribution in both windows: noise only
        rows += station_rows(rng, f"NOISE-{k}", base=(70, 12), recent=(70, 12))
    # a real but small drop (3 points) on many scans: significant, below the 5-point rule
    rows += station_rows(
        rng, "SMALL", base=(75, 6), recent=(72, 6), per_base_day=12, per_recent_day=40
    )
    # a large drop on too few recent scans (10 < 30): not tested at all
    rows += station_rows(rng, "FEW", base=(75, 5), recent=[40.0] * 10)
    bulk_seed(any_url, rows)
    assert drift(any_url) == []
    with db.session_scope(any_url, readonly=True) as s:
        result = check_drift(s, ["station"], until=UNTIL, model_version="v1")
    outcomes = {c.group: c.outcome for c in result.checks}
    assert outcomes["FEW"] == "too few scans" and outcomes["SMALL"] == "ok"
    small = next(c for c in result.checks if c.group == "SMALL")
    assert small.baseline is not None and small.recent is not None
    assert 1.5 < small.baseline.mean - small.recent.mean < 5
    assert welch_drop_p(small.baseline, small.recent) < 1e-6  # "significant", yet no alert
    # the same ledger with a lower bar: the small drop fires, the noise still does not
    assert drift(any_url, mean_drop=1.5) == [("SMALL", "mean score")]
    assert drift(any_url, min_scans=5) == [("FEW", "mean score"), ("FEW", "poor share")]


@pytest.mark.integration
def test_poor_share_rise_without_a_mean_drop(any_url: str) -> None:
    rng = random.Random(8)
    # before: all near 70; now: three in four near 80, one in four poor (near 35):
    # the mean moves by about 2 points, the poor share by 25 points
    recent = [round(rng.gauss(80, 3), 2) if i % 4 else round(rng.gauss(35, 3), 2)
              for i in range(48)]  # fmt: skip
    bulk_seed(any_url, station_rows(rng, "BIMODAL", base=(70, 4), recent=recent))
    assert drift(any_url) == [("BIMODAL", "poor share")]


@pytest.mark.integration
def test_cli_alerts_exit_codes(any_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(2)
    rows: list[Row] = []
    for k in range(4):
        rows += station_rows(rng, f"S-OK-{k}", base=(75, 8), recent=(75, 8))
    bulk_seed(any_url, rows)
    base = ["report", "--database-url", any_url, "--alerts"]
    assert main(base) == 0
    assert capsys.readouterr().out.strip() == "No drift alerts."
    # one station of five drops 15 points: its probes are shared, so they drop ~3 (no alert)
    bulk_seed(any_url, station_rows(rng, "S-BAD", base=(75, 8), recent=(60, 8)))
    assert main(base) == 3
    out = capsys.readouterr().out
    assert out.startswith("Drift alerts (2):")  # the station and its operator
    assert "ALERT Station S-BAD: mean score fell from" in out
    assert "ALERT Operator op-S-BAD: mean score fell from" in out
    assert main([*base, "--json"]) == 3
    payload = json.loads(capsys.readouterr().out)
    assert {a["group"] for a in payload["alerts"]} == {"S-BAD", "op-S-BAD"}
    # 5 stations, 3 probes and 5 operators, two tests each
    assert payload["corrected_p_value"] == pytest.approx(0.01 / 26)
    # a stricter rule silences it
    assert main([*base, "--drop", "30"]) == 0

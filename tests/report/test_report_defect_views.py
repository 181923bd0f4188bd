"""The defect views of migration 0006 (qa_daily_defects_by_station, _by_operator,
_by_transducer) on SQLite and PostgreSQL, against figures worked out by hand: the HAND
ledger (tests/report/conftest.py) plus two scans of a model version that judges only two
defects, and a superseded result whose defect must not count."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect

import db
from db import ledger
from db.migrate import _config
from model.defects import DEFECTS
from tests.helpers.ledger import Row, query_rows, seed, supersede

pytestmark = pytest.mark.integration

D1, D2 = "2025-03-01", "2025-03-02"
VIEWS = {
    "qa_daily_defects_by_station": ("station_name",),
    "qa_daily_defects_by_operator": ("operator",),
    "qa_daily_defects_by_transducer": ("transducer", "station_name"),
}
COUNTS = ("judged", "listed", "ranked_first", "poor_judged", "poor_listed")
SHARES = ("listed_share", "first_share", "poor_listed_share")
V2 = ("low_gain", "noise")  # the only defects model version v2 judges


@pytest.fixture
def defects_url(hand_url: str) -> str:
    """HAND, plus: scan 14 (03-01, station R, op-c, probe L3, v2, score 30: poor, lists
    low_gain) and scan 15 (03-01, station A, op-a, probe L1, v2, score 85, clean), whose
    earlier result by v-old listed blur (no longer its outcome: it must not count)."""
    with db.session_scope(hand_url) as s:
        ledger.ensure_model_version(s, "v2", defect_names=V2)
    extra = [
        Row(date(2025, 3, 1), 30, station="R", operator="op-c", transducer="L3", version="v2",
            defects=(("low_gain", 0.7, 1.0),)),  # 14
        Row(date(2025, 3, 1), 85, station="A", operator="op-a", transducer="L1", version="v2",
            manufacturer="M1", model_name="X1"),  # 15
    ]  # fmt: skip
    assert seed(hand_url, extra, start=14) == [14, 15]
    supersede(hand_url, 15, "v-old", "blur")
    return hand_url


def view_rows(url: str, view: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    keys = VIEWS[view]
    got = query_rows(url, f"SELECT * FROM {view}")
    assert list(got[0]) == ["day", *keys, "defect", *COUNTS[:2], SHARES[0], COUNTS[2],
                            SHARES[1], *COUNTS[3:], SHARES[2]]  # fmt: skip
    table = {(r["day"], *(r[k] for k in keys), r["defect"]): r for r in got}
    assert len(table) == len(got), "one row per day, group and defect"
    return table


Judged = tuple[int, int] | None  # (judged, poor_judged)


def expected(
    groups: dict[tuple[Any, ...], tuple[Judged, Judged]],
    listed: dict[tuple[Any, ...], tuple[int, int, int]],
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The rows worked out by hand. ``groups``: (day, group...) -> the (judged, poor_judged)
    of the defects only v1 judges, and of low_gain and noise (judged by v1 and v2); None: no
    scan there judges them. ``listed``: (day, group..., defect) -> (listed, ranked_first,
    poor_listed); every other row lists nothing."""
    out = {}
    for group, (v1_only, both) in groups.items():
        for defect in DEFECTS:
            counts = both if defect in V2 else v1_only
            if counts is None:
                continue
            judged, poor_judged = counts
            n, first, poor = listed.get((*group, defect), (0, 0, 0))
            out[(*group, defect)] = {
                "judged": judged, "listed": n, "ranked_first": first,
                "poor_judged": poor_judged, "poor_listed": poor,
                "listed_share": round(n / judged, 4), "first_share": round(first / judged, 4),
                "poor_listed_share": round(poor / poor_judged, 4) if poor_judged else None,
            }  # fmt: skip
    assert not set(listed) - set(out)
    return out


def check(got: dict[tuple[Any, ...], dict[str, Any]], want: dict[tuple[Any, ...], Any]) -> None:
    assert set(got) == set(want)
    for key, row in want.items():
        assert {k: got[key][k] for k in row} == row, key


def test_by_station_by_hand(defects_url: str) -> None:
    got = view_rows(defects_url, "qa_daily_defects_by_station")
    # 03-01 A: v1 scans 1 2 3 4 (3 poor: 40, lists low_gain) and v2 scan 15 (clean; its
    # v-old blur is not its outcome); 03-01 R: scan 14 only (v2: low_gain and noise only);
    # 03-02 A: scans 8 9 10 (10 poor: dead_elements first, noise second); scan 11: no
    # station; 02-27 C (v0, no defect head), failed, skipped and queued scans: no rows
    want = expected(
        {
            (D1, "A"): ((4, 1), (5, 1)),
            (D1, "B"): ((1, 0), (1, 0)),
            (D1, "R"): (None, (1, 1)),
            (D2, "A"): ((3, 1), (3, 1)),
            (D2, None): ((1, 0), (1, 0)),
        },
        {
            (D1, "A", "low_gain"): (1, 1, 1),
            (D1, "R", "low_gain"): (1, 1, 1),
            (D2, "A", "dead_elements"): (1, 1, 1),
            (D2, "A", "noise"): (1, 0, 1),
        },
    )
    check(got, want)
    assert len(got) == 4 * len(DEFECTS) + 2
    assert got[(D1, "A", "low_gain")]["listed_share"] == 0.2  # 1 of 5 judged
    assert got[(D1, "A", "blur")]["judged"] == 4  # v2 does not judge blur
    assert got[(D2, "A", "noise")]["listed_share"] == 0.3333
    assert got[(D2, "A", "noise")]["first_share"] == 0.0
    assert got[(D1, "B", "low_gain")]["poor_listed_share"] is None  # no poor scan
    assert (D1, "R", "blur") not in got
    assert not any(r["listed"] for k, r in got.items() if k[-1] == "blur")


def test_by_operator_by_hand(defects_url: str) -> None:
    got = view_rows(defects_url, "qa_daily_defects_by_operator")
    want = expected(
        {
            (D1, "op-a"): ((3, 0), (4, 0)),  # scans 1 2 7 (v1) and 15 (v2)
            (D1, "op-b"): ((2, 1), (2, 1)),  # scans 3 4
            (D1, "op-c"): (None, (1, 1)),  # scan 14
            (D2, "op-a"): ((1, 0), (1, 0)),  # scan 8
            (D2, "op-b"): ((2, 1), (2, 1)),  # scans 9 10
            (D2, None): ((1, 0), (1, 0)),  # scan 11; 03-01 None: failed and skipped only
        },
        {
            (D1, "op-b", "low_gain"): (1, 1, 1),
            (D1, "op-c", "low_gain"): (1, 1, 1),
            (D2, "op-b", "dead_elements"): (1, 1, 1),
            (D2, "op-b", "noise"): (1, 0, 1),
        },
    )
    check(got, want)
    assert got[(D1, "op-b", "low_gain")]["listed_share"] == 0.5
    assert got[(D1, "op-b", "low_gain")]["poor_listed_share"] == 1.0


def test_by_transducer_by_hand(defects_url: str) -> None:
    got = view_rows(defects_url, "qa_daily_defects_by_transducer")
    want = expected(
        {
            (D1, "L1", "A"): ((3, 0), (4, 0)),  # scans 1 2 4 and 15
            (D1, "L2", "A"): ((1, 1), (1, 1)),  # scan 3
            (D1, "L2", "B"): ((1, 0), (1, 0)),  # scan 7: the same probe name, another station
            (D1, "L3", "R"): (None, (1, 1)),  # scan 14
            (D2, "L1", "A"): ((2, 0), (2, 0)),  # scans 8 9
            (D2, "L2", "A"): ((1, 1), (1, 1)),  # scan 10
            (D2, None, None): ((1, 0), (1, 0)),  # scan 11
        },
        {
            (D1, "L2", "A", "low_gain"): (1, 1, 1),
            (D1, "L3", "R", "low_gain"): (1, 1, 1),
            (D2, "L2", "A", "dead_elements"): (1, 1, 1),
            (D2, "L2", "A", "noise"): (1, 0, 1),
        },
    )
    check(got, want)
    assert got[(D2, "L2", "A", "dead_elements")]["listed_share"] == 1.0


def test_counts_add_up_across_groups(defects_url: str) -> None:
    """Counts are additive: a day's totals are the same from every view."""
    totals = {
        view: query_rows(
            defects_url,
            f"SELECT day, defect, SUM(judged) AS judged, SUM(listed) AS listed, "
            f"SUM(ranked_first) AS ranked_first FROM {view} GROUP BY day, defect "
            "ORDER BY day, defect",
        )
        for view in VIEWS
    }
    first, *others = totals.values()
    assert all(t == first for t in others)
    judged = {(r["day"], r["defect"]): r["judged"] for r in first}
    assert judged[(D1, "low_gain")] == 7  # A 5, B 1, R 1
    assert judged[(D1, "blur")] == 5  # A 4, B 1: v2 does not judge blur


def test_downgrade_drops_the_defect_views_only(defects_url: str) -> None:
    cfg = _config(defects_url)
    with db.get_engine(defects_url).begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005")
    assert db.current_revision(defects_url) == "0005"
    with db.get_engine(defects_url).connect() as conn:
        views = set(inspect(conn).get_view_names())
    assert not set(VIEWS) & views
    assert {"qa_scan_scores", "qa_daily_summary", "qa_daily_by_transducer"} <= views
    db.upgrade(defects_url)
    assert db.current_revision(defects_url) == db.head_revision()
    assert len(view_rows(defects_url, "qa_daily_defects_by_station")) == 4 * len(DEFECTS) + 2

"""The QA views on SQLite and PostgreSQL, checked against the HAND ledger worked out by
hand (tests/report/conftest.py), and the migrations that create, change and drop them."""

from __future__ import annotations

from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect, text

import db
from db.migrate import _config
from tests.helpers.ledger import query_rows

pytestmark = pytest.mark.integration

VIEWS = {
    "qa_scan_outcomes",
    "qa_scan_scores",
    "qa_daily_summary",
    "qa_daily_by_operator",
    "qa_daily_by_transducer",
    "qa_daily_by_body_part",
    "qa_model_versions",
}
DAILY_COLUMNS = [
    "received", "scans", "mean_score", "median_score", "min_score", "max_score",
    "good", "average", "poor", "good_share", "average_share", "poor_share",
    "failed", "skipped", "pending",
]  # fmt: skip


def daily(*values: Any) -> dict[str, Any]:
    return dict(zip(DAILY_COLUMNS, values, strict=True))


def test_views_exist_with_their_columns(hand_url: str) -> None:
    with db.get_engine(hand_url).connect() as conn:
        assert set(inspect(conn).get_view_names()) >= VIEWS
    [scan] = query_rows(hand_url, "SELECT * FROM qa_scan_scores WHERE scan_id = 1")
    assert list(scan) == [
        "scan_id", "day", "received_at", "scored_at", "acquired_at", "study_at",
        "study_instance_uid", "series_instance_uid", "sop_instance_uid", "modality",
        "manufacturer", "model_name", "station_name", "device_serial_number",
        "software_versions", "transducer", "operator", "body_part", "institution",
        "frames_scored", "score", "mean_frame_score", "min_frame_score", "p10_frame_score",
        "grade", "is_good", "is_average", "is_poor", "aggregate", "model_version",
        "first_defect",
    ]  # fmt: skip


def test_scan_scores_one_row_per_scored_scan(hand_url: str) -> None:
    got = query_rows(
        hand_url,
        "SELECT scan_id, day, score, min_frame_score, p10_frame_score, grade, is_good, "
        "is_average, is_poor, model_version, station_name, sop_instance_uid "
        "FROM qa_scan_scores ORDER BY scan_id",
    )
    assert [r["scan_id"] for r in got] == [1, 2, 3, 4, 7, 8, 9, 10, 11, 12]
    first = got[0]
    # acquired 2025-03-01 09:30 by the scanner, received 2025-03-02 01:00 UTC: day is 03-01
    assert first["day"] == "2025-03-01" and first["score"] == 90.0
    assert (first["min_frame_score"], first["p10_frame_score"]) == (84.0, 86.0)
    assert (first["grade"], first["is_good"], first["is_average"], first["is_poor"]) == (
        "good",
        1,
        0,
        0,
    )
    assert first["sop_instance_uid"] == "1.2.826.0.1.3680043.10.9999.1"
    no_metadata = got[8]  # scan 11: no acquisition time, received 2025-03-02 12:00 UTC
    assert (no_metadata["day"], no_metadata["station_name"], no_metadata["grade"]) == (
        "2025-03-02",
        None,
        "average",
    )
    assert got[9]["model_version"] == "v0" and got[9]["is_poor"] == 1
    assert "path" not in query_rows(hand_url, "SELECT * FROM qa_scan_scores")[0]  # no file names


def test_scan_outcomes_every_scan_and_status(hand_url: str) -> None:
    got = query_rows(hand_url, "SELECT status, COUNT(*) AS n FROM qa_scan_outcomes GROUP BY status")
    assert {r["status"]: r["n"] for r in got} == {
        "scored": 10, "failed": 1, "skipped": 1, "queued": 1
    }  # fmt: skip


def test_daily_summary_by_hand(hand_url: str) -> None:
    got = query_rows(
        hand_url,
        f"SELECT day, station_name, manufacturer, model_name, {', '.join(DAILY_COLUMNS)} "
        "FROM qa_daily_summary ORDER BY day, station_name",
    )
    by_key = {(r["day"], r["station_name"]): r for r in got}
    assert set(by_key) == {
        ("2025-02-27", "C"), ("2025-03-01", "A"), ("2025-03-01", "B"),
        ("2025-03-02", "A"), ("2025-03-02", None),
    }  # fmt: skip

    def check(key: tuple[str, str | None], expected: dict[str, Any]) -> None:
        row = by_key[key]
        assert {k: row[k] for k in expected} == pytest.approx(expected), key

    # 03-01 A: scores 90 70 40 60 -> mean 65, median (60 + 70) / 2; one failed, one skipped
    check(("2025-03-01", "A"), daily(6, 4, 65.0, 65.0, 40.0, 90.0, 1, 2, 1, 0.25, 0.5, 0.25,
                                     1, 1, 0))  # fmt: skip
    assert (by_key[("2025-03-01", "A")]["manufacturer"], by_key[("2025-03-01", "A")]
            ["model_name"]) == ("M1", "X1")  # fmt: skip
    # 03-02 A: scores 50 80 30 -> mean 160 / 3, median 50; one still queued
    check(("2025-03-02", "A"), daily(4, 3, 53.3333, 50.0, 30.0, 80.0, 1, 1, 1, 0.3333, 0.3333,
                                     0.3333, 0, 0, 1))  # fmt: skip
    check(("2025-03-01", "B"), daily(1, 1, 85.0, 85.0, 85.0, 85.0, 1, 0, 0, 1.0, 0.0, 0.0,
                                     0, 0, 0))  # fmt: skip
    check(("2025-03-02", None), daily(1, 1, 75.0, 75.0, 75.0, 75.0, 0, 1, 0, 0.0, 1.0, 0.0,
                                      0, 0, 0))  # fmt: skip
    check(("2025-02-27", "C"), daily(1, 1, 10.0, 10.0, 10.0, 10.0, 0, 0, 1, 0.0, 0.0, 1.0,
                                     0, 0, 0))  # fmt: skip


def test_daily_by_operator_by_hand(hand_url: str) -> None:
    got = query_rows(
        hand_url,
        "SELECT day, operator, received, scans, mean_score, median_score, good, average, "
        "poor, poor_share, failed, skipped, pending FROM qa_daily_by_operator",
    )
    by_key = {(r["day"], r["operator"]): r for r in got}
    # 03-01 op-a: 90 70 85 -> mean 245 / 3, median 85
    assert by_key[("2025-03-01", "op-a")] == {
        "day": "2025-03-01", "operator": "op-a", "received": 3, "scans": 3,
        "mean_score": 81.6667, "median_score": 85.0, "good": 2, "average": 1, "poor": 0,
        "poor_share": 0.0, "failed": 0, "skipped": 0, "pending": 0,
    }  # fmt: skip
    # 03-01 no operator recorded: only the failed and the skipped scan, so no score at all
    nothing = by_key[("2025-03-01", None)]
    assert (nothing["received"], nothing["scans"], nothing["failed"], nothing["skipped"]) == (
        2, 0, 1, 1
    )  # fmt: skip
    assert nothing["mean_score"] is None and nothing["median_score"] is None
    assert nothing["poor_share"] is None
    # 03-02 op-b: 80 30 -> median (30 + 80) / 2
    assert by_key[("2025-03-02", "op-b")]["median_score"] == 55.0
    assert by_key[("2025-03-02", None)]["pending"] == 1


def test_daily_by_transducer_and_body_part(hand_url: str) -> None:
    probes = query_rows(
        hand_url,
        "SELECT transducer, SUM(scans) AS scans, MIN(min_score) AS low "
        "FROM qa_daily_by_transducer GROUP BY transducer",
    )
    assert {r["transducer"]: (r["scans"], r["low"]) for r in probes} == {
        "L1": (5, 50.0), "L2": (3, 30.0), None: (2, 10.0)
    }  # fmt: skip
    parts = query_rows(
        hand_url,
        "SELECT body_part, median_score FROM qa_daily_by_body_part "
        "WHERE day = '2025-03-01' AND body_part = 'BREAST'",
    )
    assert parts == [{"body_part": "BREAST", "median_score": 77.5}]  # 60 70 85 90


def test_model_versions_view(hand_url: str) -> None:
    got = query_rows(
        hand_url, "SELECT model_version, scans, mean_score FROM qa_model_versions ORDER BY 1"
    )
    assert got == [
        {"model_version": "v0", "scans": 1, "mean_score": 10.0},
        {"model_version": "v1", "scans": 9, "mean_score": round(580 / 9, 4)},
    ]


def test_round_works_on_both_databases(hand_url: str) -> None:
    """Scores and shares are NUMERIC on PostgreSQL, so ROUND(x, n) works as on SQLite."""
    got = query_rows(
        hand_url,
        "SELECT ROUND(mean_score, 1) AS m, ROUND(poor_share, 2) AS p, ROUND(score, 1) AS s "
        "FROM qa_daily_summary d JOIN qa_scan_scores s ON s.day = d.day "
        "AND s.station_name = d.station_name WHERE s.scan_id = 8",
    )
    assert got == [{"m": 53.3, "p": 0.33, "s": 50.0}]


def test_downgrade_drops_the_views_and_upgrade_restores_them(hand_url: str) -> None:
    cfg = _config(hand_url)
    with db.get_engine(hand_url).begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    assert db.current_revision(hand_url) == "0001"
    with db.get_engine(hand_url).connect() as conn:
        assert not VIEWS & set(inspect(conn).get_view_names())
        assert conn.execute(text("SELECT COUNT(*) FROM scans")).scalar() == 13  # data kept
    db.upgrade(hand_url)
    assert db.current_revision(hand_url) == db.head_revision()
    assert len(query_rows(hand_url, "SELECT * FROM qa_scan_scores")) == 10


def test_scan_scores_first_defect(hand_url: str) -> None:
    got = query_rows(hand_url, "SELECT scan_id, first_defect FROM qa_scan_scores ORDER BY scan_id")
    assert {r["scan_id"]: r["first_defect"] for r in got if r["first_defect"]} == {
        3: "low_gain",
        10: "dead_elements",
    }


def test_downgrade_to_0002_restores_its_view_and_keeps_the_scores(hand_url: str) -> None:
    before = query_rows(hand_url, "SELECT * FROM qa_scan_scores ORDER BY scan_id")
    cfg = _config(hand_url)
    with db.get_engine(hand_url).begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0002")
    assert db.current_revision(hand_url) == "0002"
    after = query_rows(hand_url, "SELECT * FROM qa_scan_scores ORDER BY scan_id")
    assert after == [{k: v for k, v in r.items() if k != "first_defect"} for r in before]
    with db.get_engine(hand_url).connect() as conn:
        schema = inspect(conn)
        assert "scan_defects" not in schema.get_table_names()
        for table, column in (
            ("scan_scores", "first_defect"),
            ("frame_scores", "first_defect"),
            ("model_versions", "defect_names"),
        ):
            assert column not in {c["name"] for c in schema.get_columns(table)}, table
        assert set(schema.get_view_names()) >= VIEWS
    db.upgrade(hand_url)  # the defects are gone with the downgrade; the columns come back
    again = query_rows(hand_url, "SELECT * FROM qa_scan_scores ORDER BY scan_id")
    assert again == [{**r, "first_defect": None} for r in before]

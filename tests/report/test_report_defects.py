"""Defects through ``usqa report``: a seeded month where one station's ``low_gain`` share
rises and one probe shows ``dead_elements`` for a week. The defect alert names that station
and the probe-fault alert that probe, and nothing else fires; the shares of every output
equal SQL written by hand here; the HTML report opens in headless Chromium without console
errors. On SQLite and PostgreSQL (``any_url``)."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, insert, text, update

import db
from db.models import ModelVersion, ScanDefect, ScanScore
from model.defects import DEFECTS
from tests.helpers.ledger import Row, bulk_seed
from tests.report.test_report_html import browse, check_offline, console_lines
from worker.cli import main

pytestmark = pytest.mark.integration

UNTIL = date(2025, 6, 30)
DAYS = [UNTIL - timedelta(days=k) for k in range(35)][::-1]  # baseline 28 + recent 7
RECENT_SINCE = UNTIL - timedelta(days=6)
STATIONS = ("S1", "S2", "S3", "S4", "S5")
PROBES = ("C1-6", "L2-9", "C5-1")
LOW_GAIN_STATION = "S1"
FAULTY = ("S3", "C5-1")  # dead_elements from FAULT_SINCE on
FAULT_SINCE = UNTIL - timedelta(days=6)
PER_DAY = 6  # scans per station and day


def month(rng: random.Random) -> tuple[list[Row], list[tuple[str, ...]]]:
    """The rows and, per row, its listed defects (most probable first)."""
    rows, listed = [], []
    for day in DAYS:
        for station in STATIONS:
            for i in range(PER_DAY):
                probe = PROBES[i % 3]
                low_gain = 0.45 if station == LOW_GAIN_STATION and day >= RECENT_SINCE else 0.05
                u = rng.random()
                defects: tuple[str, ...] = ()
                if u < low_gain:
                    defects = ("low_gain",)
                elif u < low_gain + 0.05:
                    defects = ("noise",)
                elif u < low_gain + 0.10:
                    defects = ("shadowing",)
                if (station, probe) == FAULTY and day >= FAULT_SINCE:
                    # the streaks, first or behind another defect
                    defects = ("dead_elements", *defects) if i % 2 else (*defects, "dead_elements")
                score = round(min(100.0, max(0.0, rng.gauss(72, 12))), 2)
                rows.append(
                    Row(day, score, station=station, transducer=probe,
                        operator=f"op-{rng.randrange(1, 13):02d}", body_part="ABDOMEN",
                        manufacturer="GE", model_name="LOGIQ")
                )  # fmt: skip
                listed.append(defects)
    # an isolated dead_elements call on another probe: no fault
    listed[3] = ("dead_elements",)
    return rows, listed


def seed_defects(url: str, ids: list[int], listed: list[tuple[str, ...]]) -> None:
    """What the worker writes for a defects model: the vocabulary on the model version,
    the ranked defect rows and each scan's first defect."""
    with db.session_scope(url) as s:
        s.execute(update(ModelVersion).values(defect_names=json.dumps(list(DEFECTS))))
        rows = [
            {"scan_id": i, "model_version": "v1", "defect": name, "rank": rank,
             "probability": round(0.9 - 0.1 * rank, 2), "frame_share": 1.0}
            for i, names in zip(ids, listed, strict=True)
            for rank, name in enumerate(names, start=1)
        ]  # fmt: skip
        s.execute(insert(ScanDefect), rows)
        firsts = [
            {"sid": i, "first": names[0]} for i, names in zip(ids, listed, strict=True) if names
        ]
        s.execute(
            update(ScanScore.__table__)
            .where(ScanScore.__table__.c.scan_id == bindparam("sid"))
            .values(first_defect=bindparam("first")),
            firsts,
        )


@pytest.fixture
def defect_url(any_url: str) -> str:
    rows, listed = month(random.Random(17))
    seed_defects(any_url, bulk_seed(any_url, rows), listed)
    return any_url


def sql_shares(url: str, since: date, column: str) -> dict[str | None, dict[str, Any]]:
    """First-defect counts per group over judged scans, and each group's poor first
    defects, by hand."""
    with db.session_scope(url, readonly=True) as s:
        found = s.execute(
            text(
                f"SELECT q.{column}, q.first_defect, q.grade, COUNT(*) FROM qa_scan_scores q "
                "JOIN model_versions mv ON mv.version = q.model_version "
                "WHERE mv.defect_names IS NOT NULL AND q.day >= :since AND q.day <= :until "
                "GROUP BY 1, 2, 3"
            ).bindparams(bindparam("since"), bindparam("until")),
            {"since": since, "until": UNTIL},
        ).all()
    out: dict[str | None, dict[str, Any]] = {}
    for group, first, grade, n in found:
        g = out.setdefault(group, {"judged": 0, "first": {}, "poor": {}})
        g["judged"] += n
        if first is not None:
            g["first"][first] = g["first"].get(first, 0) + n
            if grade == "poor":
                g["poor"][first] = g["poor"].get(first, 0) + n
    return out


def report_json(url: str, capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    base = ["report", "--database-url", url, "--until", UNTIL.isoformat(), "--json"]
    assert main([*base, *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_alerts_name_the_station_and_the_probe_only(
    defect_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["report", "--database-url", defect_url, "--alerts"]
    assert main([*args, "--json"]) == 3
    payload = json.loads(capsys.readouterr().out)
    drift = [(a["dimension"], a["group"], a["metric"], a["defect"]) for a in payload["alerts"]]
    assert drift == [("station", LOW_GAIN_STATION, "defect share", "low_gain")]
    [alert] = payload["alerts"]
    assert alert["baseline"] < 0.12 and alert["recent"] > 0.3
    assert alert["p_value"] < alert["threshold"]
    # 5 stations and 3 probes are tested (operators have too few scans in a week):
    # two score tests and 9 defect shares (dead_elements left to the probe rule) each
    assert payload["tests"] == 8 * (2 + 9)
    [probe] = payload["equipment"]["alerts"]
    assert (probe["station"], probe["transducer"], probe["defect"]) == (*FAULTY, "dead_elements")
    assert probe["first_seen"] == FAULT_SINCE.isoformat() and probe["days"] == 7
    # by hand: two C5-1 scans a day on S3 for the week, each listing dead_elements
    with db.session_scope(defect_url, readonly=True) as s:
        hits, scans = s.execute(
            text(
                "SELECT SUM(CASE WHEN EXISTS (SELECT 1 FROM scan_defects d WHERE d.scan_id = "
                "q.scan_id AND d.defect = 'dead_elements') THEN 1 ELSE 0 END), COUNT(*) "
                "FROM qa_scan_scores q WHERE q.station_name = 'S3' AND q.transducer = 'C5-1' "
                "AND q.day >= :since"
            ).bindparams(bindparam("since")),
            {"since": FAULT_SINCE},
        ).one()
    assert (probe["scans_with_defect"], probe["scans"]) == (hits, scans) == (14, 14)
    assert probe["share"] == pytest.approx(1.0)

    assert main(args) == 3
    out = capsys.readouterr().out
    assert "ALERT Station S1: low_gain as first defect rose from" in out
    assert "Suspected probe faults (1): service, not training:" in out
    assert "PROBE Probe C5-1 on station S3: dead_elements on 14 of 14 scans (100%)" in out
    # a stricter probe rule and a higher defect bar silence both
    assert main([*args, "--probe-min-days", "8", "--defect-rise", "60"]) == 0


def test_shares_equal_sql_by_hand(
    defect_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = report_json(defect_url, capsys, "--days", "35")
    since = date.fromisoformat(payload["since"])
    assert since == DAYS[0]
    by_hand = sql_shares(defect_url, since, "station_name")
    defects = payload["defects"]
    assert defects["names"] == list(DEFECTS)
    groups = {g["group"]: g for g in defects["groups"]}
    assert set(groups) == set(STATIONS)
    for station, hand in by_hand.items():
        g = groups[station]
        assert g["judged"] == hand["judged"] == g["scans"]
        for name in DEFECTS:
            n = hand["first"].get(name, 0)
            assert g["first_defect"][name] == n
            assert g["first_defect_share"][name] == pytest.approx(n / hand["judged"])
        poor = hand["poor"]
        if poor:
            top = max(poor.values())
            assert poor[g["poor_top_defect"]] == top == g["poor_top_defect_scans"]
    overall = defects["overall"]
    assert overall["judged"] == sum(h["judged"] for h in by_hand.values())

    out_csv = tmp_path / "stations.csv"
    base = ["report", "--database-url", defect_url, "--until", UNTIL.isoformat(), "--days", "35"]
    assert main([*base, "--csv", str(out_csv)]) == 0
    text_out = capsys.readouterr().out
    assert "Defects: share of the 1050 scans whose model judges defects" in text_out
    for row in csv.DictReader(io.StringIO(out_csv.read_text())):
        if row["dimension"] == "station":
            hand = by_hand[row["group"]]
            share = hand["first"].get("low_gain", 0) / hand["judged"]
            assert float(row["low_gain_share"]) == pytest.approx(share)

    # --by defect: one group per first defect, counted as the SQL counts them
    by_defect = report_json(defect_url, capsys, "--days", "35", "--by", "defect")
    counts = {g["group"]: g["scans"] for g in by_defect["groups"]}
    hand_counts: dict[str, int] = {}
    for hand in by_hand.values():
        for name, n in hand["first"].items():
            hand_counts[name] = hand_counts.get(name, 0) + n
    no_defect = overall["judged"] - sum(hand_counts.values())
    assert counts == {**hand_counts, "(no defect)": no_defect}
    assert by_defect["drift"]["alerts"][0]["group"] == LOW_GAIN_STATION  # still checked

    # the lowest-scoring scans list their defects, as scan_defects holds them
    worst = payload["worst_scans"]
    assert all(w["defects"] is not None for w in worst)
    listed = {w["scan_id"]: [d["name"] for d in w["defects"]] for w in worst}
    with db.session_scope(defect_url, readonly=True) as s:
        for scan_id, names in listed.items():
            expected = s.execute(
                text("SELECT defect FROM scan_defects WHERE scan_id = :i ORDER BY rank"),
                {"i": scan_id},
            ).scalars()
            assert names == list(expected)


def test_html_with_defects_opens_in_chromium(defect_url: str, tmp_path: Path) -> None:
    if not defect_url.startswith("sqlite"):
        pytest.skip("the page is the same on both databases: rendered once, on SQLite")
    page = tmp_path / "report.html"
    assert main(["report", "--database-url", defect_url, "--html", str(page)]) == 0
    html = page.read_text(encoding="utf-8")
    check_offline(html)
    assert 'data-charts="7"' in html and html.count('<img class="chart"') == 7
    assert "1 suspected probe fault(s)</b>" in html and "Probe C5-1 on station S3" in html
    assert "low_gain as first defect rose" in html
    assert "<th class=l>Defects</th>" in html
    dom = browse(page, tmp_path, "--dump-dom", "--window-size=1280,2000")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-charts-rendered="7"' in dom.stdout
    assert console_lines(dom.stderr) == []


def test_alerts_as_prometheus_gauges(any_url: str) -> None:
    from prometheus_client import generate_latest

    from worker.ops import metrics, quality

    rows, listed = month(random.Random(17))
    seed_defects(any_url, bulk_seed(any_url, rows), listed)
    quality.refresh(any_url)
    exposed = generate_latest(metrics.metrics().registry).decode()
    series = [
        line for line in exposed.splitlines() if line.startswith(("usqa_quality", "usqa_probe"))
    ]
    assert (
        'usqa_quality_alerts{defect="low_gain",dimension="station",group="S1",kind="defect"} 1.0'
        in series
    )
    assert 'usqa_probe_fault_share{defect="dead_elements",station="S3",transducer="C5-1"} 1.0' in (
        series
    )
    assert sum(line.startswith("usqa_quality_alerts{") for line in series) == 1
    assert sum(line.startswith("usqa_probe_fault_share{") for line in series) == 1
    quality.publish(None)  # no data: the series go away, the timestamp stays
    exposed = generate_latest(metrics.metrics().registry).decode()
    assert "usqa_quality_alerts{" not in exposed and "usqa_probe_fault_share{" not in exposed
    assert "usqa_quality_alerts_checked_timestamp_seconds" in exposed


def test_probe_rule_first_seen_skips_an_isolated_early_call() -> None:
    import numpy as np

    from db.qa.equipment import ProbeRule, _probe_alert

    # 4 scans a day for 20 days; one call on day 1, then every scan from day 16 on
    days = np.repeat(np.arange(1, 21), 4)
    hit = days >= 16
    hit[0] = True
    rule = ProbeRule()
    # from day 1 the share is 21/80 (26 %, under 30 %); from day 16 it is 20/20
    assert _probe_alert(rule, days, hit) == (16, 20, 5, 20, 20)
    assert _probe_alert(ProbeRule(min_days=6), days, hit) is None  # 5 days, and day 1 alone
    assert _probe_alert(ProbeRule(min_share=0.25), days, hit) == (1, 20, 6, 21, 80)
    with pytest.raises(ValueError, match="share"):
        ProbeRule(min_share=0)
    assert main(["report", "--probe-min-share", "0", "--database-url", "sqlite://"]) == 2

"""``usqa report`` figures on SQLite and PostgreSQL against the HAND ledger worked out by
hand (tests/report/conftest.py); its terminal, CSV and JSON outputs; empty and one-scan
ledgers; bad options."""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import date
from pathlib import Path

import pytest

import db
from db.qa.report import build_report
from tests.helpers.ledger import Row, seed
from worker.cli import main

pytestmark = pytest.mark.integration

TODAY = date(2025, 3, 10)
# Student's t quantiles t(0.975, df) from tables, and z(0.975) for Wilson's interval
T975 = {6: 2.446912, 8: 2.306004}
Z = 1.959964


def report(url: str, **kw: object):  # type: ignore[no-untyped-def]
    with db.session_scope(url, readonly=True) as s:
        return build_report(s, today=TODAY, **kw)  # type: ignore[arg-type]


def test_overall_figures_by_hand(hand_url: str) -> None:
    r = report(hand_url)
    # default period: 30 days up to the latest day with scans (2025-03-02), model v1 (the
    # version of the most recent scan); the v0 scan of 02-27 is counted but left out
    assert (str(r.period), r.model_version) == ("2025-02-01 to 2025-03-02", "v1")
    assert r.versions == {"v1": 9, "v0": 1} and r.excluded_versions == {"v0": 1}
    s = r.overall.stats
    scores = [90, 70, 40, 60, 85, 50, 80, 30, 75]  # v1: sorted 30 40 50 60 70 75 80 85 90
    assert s.scans == 9 and s.mean == pytest.approx(580 / 9)
    assert (s.median, s.min, s.max) == (70, 30, 90)
    # nearest rank ceil(q n / 100): p5 -> rank 1, q1 -> 3, q3 -> 7, p95 -> 9
    assert (s.p5, s.q1, s.q3, s.p95) == (30, 50, 80, 90)
    assert (s.good, s.average, s.poor) == (3, 4, 2)
    sd = math.sqrt(sum((x - 580 / 9) ** 2 for x in scores) / 8)
    assert s.sd == pytest.approx(sd)
    half = T975[8] * sd / 3
    assert (s.ci_low, s.ci_high) == pytest.approx((580 / 9 - half, 580 / 9 + half), abs=1e-4)
    o = r.overall
    assert (o.received, o.failed, o.skipped, o.pending) == (13, 1, 1, 1)


def test_station_figures_by_hand(hand_url: str) -> None:
    r = report(hand_url)
    assert [g.group for g in r.groups] == ["A", None, "B", "C"]  # lowest mean first
    a, unknown, b, c = r.groups
    # A: 90 70 40 60 50 80 30 -> mean 60, deviations 30 10 -20 0 -10 20 -30, sum sq 2800
    assert (a.stats.scans, a.stats.mean, a.stats.median) == (7, 60, 60)
    assert a.stats.sd == pytest.approx(math.sqrt(2800 / 6))
    half = T975[6] * math.sqrt(2800 / 6) / math.sqrt(7)
    assert (a.stats.ci_low, a.stats.ci_high) == pytest.approx((60 - half, 60 + half), abs=1e-4)
    assert (a.stats.good, a.stats.average, a.stats.poor) == (2, 3, 2)
    assert (a.received, a.failed, a.skipped, a.pending) == (10, 1, 1, 1)
    # Wilson 95 % interval of 2 poor in 7
    p, n = 2 / 7, 7
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    spread = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    assert a.stats.poor_interval() == pytest.approx((centre - spread, centre + spread))
    # one scan: figures, but no spread and no interval
    assert (b.stats.scans, b.stats.mean, b.stats.sd, b.stats.ci_low) == (1, 85, None, None)
    assert (unknown.stats.scans, unknown.stats.mean) == (1, 75)
    # C has only a v0 score: received, not in the v1 figures
    assert (c.stats.scans, c.received) == (0, 1)


def test_days_worst_and_trend_by_hand(hand_url: str) -> None:
    r = report(hand_url)
    assert [(d.day.isoformat(), d.scans, d.good, d.average, d.poor) for d in r.days] == [
        ("2025-03-01", 5, 2, 2, 1),
        ("2025-03-02", 4, 1, 2, 1),
    ]
    assert [d.mean for d in r.days] == pytest.approx([69.0, 58.75])
    assert [(w.scan_id, w.score) for w in r.worst[:3]] == [(10, 30), (3, 40), (8, 50)]
    assert r.worst[0].sop_instance_uid == "1.2.826.0.1.3680043.10.9999.10"
    a_days = [(g.day.isoformat(), g.scans, g.mean) for g in r.group_days if g.group == "A"]
    assert a_days == [("2025-03-01", 4, 65.0), ("2025-03-02", 3, pytest.approx(160 / 3))]


def test_model_version_choice_and_period(hand_url: str) -> None:
    every = report(hand_url, model_version="all")
    assert every.model_version is None and every.overall.stats.scans == 10
    old = report(hand_url, model_version="v0")
    assert [(g.group, g.stats.scans) for g in old.groups if g.stats.scans] == [("C", 1)]
    one_day = report(hand_url, since=date(2025, 3, 2), until=date(2025, 3, 2))
    assert one_day.overall.stats.scans == 4 and one_day.overall.received == 5
    by_operator = report(hand_url, dimension="operator")
    assert {g.group: g.stats.scans for g in by_operator.groups} == {
        "op-a": 4, "op-b": 4, None: 1
    }  # fmt: skip
    with pytest.raises(ValueError, match="after it ends"):
        report(hand_url, since=date(2025, 3, 5), until=date(2025, 3, 1))


def test_cli_outputs_agree(
    hand_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_csv = tmp_path / "groups.csv"
    base = ["report", "--database-url", hand_url, "--until", "2025-03-02"]
    assert main([*base, "--csv", str(out_csv)]) == 0
    text = capsys.readouterr().out
    assert "Image quality report, 2025-02-01 to 2025-03-02 (30 days), by station, model v1" in text
    assert "9 scans scored: mean score 64.4, median 70.0; good 33%, average 44%, poor 22%" in text
    assert "Not included: 1 scans scored by other model versions (v0)" in text
    line_a = next(line for line in text.splitlines() if line.startswith("A "))
    assert line_a.split() == ["A", "7", "60.0", "40.0-80.0", "60.0", "29%", "43%", "29%", "1", "1"]
    assert "(not recorded)" in text
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert [r["group"] for r in rows] == ["A", "", "B", "C", "all"]
    assert float(rows[0]["mean"]) == 60 and float(rows[0]["median"]) == 60
    assert rows[0]["poor"] == "2" and rows[0]["failed"] == "1" and rows[0]["pending"] == "1"
    assert rows[3]["mean"] == "" and rows[3]["received"] == "1"
    assert rows[4]["dimension"] == "all" and rows[4]["scans"] == "9"

    assert main([*base, "--json", "--by", "transducer"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["since"] == "2025-02-01" and payload["dimension"] == "transducer"
    assert payload["overall"]["mean"] == pytest.approx(580 / 9)
    groups = {g["group"]: g for g in payload["groups"]}
    assert groups["L2"]["scans"] == 3 and groups["L2"]["median"] == 40  # 30 40 85
    assert payload["worst_scans"][0]["scan_id"] == 10
    assert payload["drift"]["checks"] and payload["drift"]["alerts"] == []
    assert "path" not in json.dumps(payload)  # file names never leave the ledger


def test_empty_database_says_no_data(
    any_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_csv, out_html = tmp_path / "r.csv", tmp_path / "r.html"
    code = main(
        ["report", "--database-url", any_url, "--csv", str(out_csv), "--html", str(out_html)]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "No data: No scans in the database yet" in text
    assert out_csv.read_text().count("\n") == 1  # the header only
    page = out_html.read_text()
    assert "No data." in page and 'data-charts="0"' in page
    assert main(["report", "--database-url", any_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["no_data"].startswith("No scans in the database")
    assert main(["report", "--database-url", any_url, "--alerts"]) == 0
    assert "No drift alerts" in capsys.readouterr().out


def test_period_without_scans_says_so(hand_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["report", "--database-url", hand_url, "--since", "2024-01-01", "--until", "2024-01-31"]
    assert main(args) == 0
    assert "No data: No scans were received for 2024-01-01 to 2024-01-31" in capsys.readouterr().out


def test_single_scan(any_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed(any_url, [Row(date(2025, 3, 1), 42.5, station="US-1")])
    html = tmp_path / "one.html"
    assert main(["report", "--database-url", any_url, "--html", str(html)]) == 0
    text = capsys.readouterr().out
    assert "1 scans scored: mean score 42.5, median 42.5" in text
    assert "Only one scored scan in this period: too few for intervals or trends." in text
    line = next(line for line in text.splitlines() if line.startswith("US-1 "))
    assert line.split() == ["US-1", "1", "42.5", "-", "42.5", "0%", "0%", "100%", "0", "0"]
    page = html.read_text()
    assert "Only one scored scan in this period" in page and 'data-charts="4"' in page


def test_bad_options_exit_2(
    hand_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["report", "--database-url", hand_url]
    assert main([*base, "--since", "March"]) == 2
    assert "'March' is not a date; expected YYYY-MM-DD" in capsys.readouterr().err
    assert main([*base, "--since", "2025-03-05", "--until", "2025-03-01"]) == 2
    assert "starts (2025-03-05) after it ends (2025-03-01)" in capsys.readouterr().err
    assert main([*base, "--html", str(tmp_path / "missing" / "r.html")]) == 2
    assert "choose a folder that exists" in capsys.readouterr().err
    assert main([*base, "--thumbnails"]) == 2
    assert "--thumbnails needs --html" in capsys.readouterr().err
    assert main([*base, "--p-value", "2"]) == 2
    assert "p-value threshold must be between 0 and 1" in capsys.readouterr().err
    assert main([*base, "--by", "colour"]) == 2


def test_old_schema_asks_for_upgrade(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    db.upgrade(url, "0001")
    assert main(["report", "--database-url", url]) == 2
    assert "usqa db upgrade" in capsys.readouterr().err

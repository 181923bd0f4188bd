"""Prometheus configuration, alert rules and the Grafana dashboard: they must only name metrics
that worker/ops/metrics.py really exports, and every alert must have its runbook section."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml  # type: ignore[import-untyped]

from tests.deploy.deploy_files import DEPLOY, REPO
from worker.ops import metrics

PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "usqa-alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "usqa-dashboard.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "usqa.yml"
LEDGER_VIEWS = {
    "qa_scan_scores",
    "qa_daily_summary",
    "qa_daily_defects_by_station",
    "qa_daily_defects_by_operator",
    "qa_daily_defects_by_transducer",
}
OPERATIONS = REPO / "docs" / "operations.md"


def exported_series() -> set[str]:
    """Every sample name the metrics module exposes (with _total/_bucket/_sum/_count)."""
    names = set()
    for family in metrics.metrics().registry.collect():
        names.add(family.name)
        names |= {sample.name for sample in family.samples}
        if family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count")}
    return names


def promql_metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', "", expr)  # label values
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    tokens = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {t for t in tokens if t.startswith("usqa_") or t == "up"}


def _parses(expr: str) -> bool:
    """PromQL syntax check with the promql-parser package (a port of Prometheus's parser)."""
    try:
        promql_parser.parse(expr)
    except ValueError:
        return False
    return True


def test_the_promql_check_rejects_bad_syntax() -> None:
    assert _parses("sum(rate(usqa_scans_scored_total[5m]))")
    assert not _parses("sum(rate(usqa_scans_scored_total[5m])")
    assert not _parses("sum by (grade) rate(usqa_scans_scored_total[5m])")


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_prometheus_scrapes_the_metrics_port_of_ingester_and_workers() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["usqa-worker"]["dns_sd_configs"][0]["names"] == ["worker"]
    assert jobs["usqa-worker"]["dns_sd_configs"][0]["port"] == 9400
    assert jobs["usqa-ingest"]["static_configs"][0]["targets"] == ["ingest:9400"]
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))
    assert compose["x-usqa"]["environment"]["USQA_METRICS_PORT"] == "9400"
    mounted = " ".join(compose["services"]["prometheus"]["volumes"])
    for rule_file in config["rule_files"]:
        assert f":{rule_file}:ro" in mounted


def test_alert_rules_use_exported_metrics_and_have_runbooks() -> None:
    exported = exported_series() | {"up"}
    headings = {
        re.sub(r"[^a-z0-9]+", "", line.lstrip("#").strip().lower())
        for line in OPERATIONS.read_text(encoding="utf-8").splitlines()
        if line.startswith("### ")
    }
    rules = _rules()
    assert len(rules) >= 6
    for rule in rules:
        name = rule["alert"]
        assert _parses(rule["expr"]), name
        used = promql_metric_names(rule["expr"])
        assert used, f"{name}: no metric in its expression"
        assert used <= exported, f"{name}: unknown metrics {used - exported}"
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name
        runbook = rule["annotations"]["runbook"]
        assert runbook == f"docs/operations.md#{name.lower()}", name
        assert name.lower() in headings, f"docs/operations.md has no section for {name}"


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_dashboard_reads_prometheus_and_the_ledger_views() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    sources = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    uids = {s["uid"]: s["type"] for s in sources}
    exported = exported_series() | {"up"}
    prom_panels = sql_panels = 0
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in _panels(dashboard):
        source = panel["datasource"]
        assert uids.get(source["uid"]) == source["type"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            if source["type"] == "prometheus":
                prom_panels += 1
                used = promql_metric_names(target["expr"])
                assert used and used <= exported, f"{panel['title']}: {used - exported}"
                assert _parses(target["expr"]), panel["title"]
            else:
                sql_panels += 1
                views = set(re.findall(r"\bFROM\s+([a-z_]+)", target["rawSql"], re.I))
                assert views <= LEDGER_VIEWS, views
    assert prom_panels >= 8 and sql_panels >= 9


def test_defect_panels_read_the_defect_views_for_the_chosen_defect() -> None:
    """The defect panels read the qa_daily_defects_* views (only views: the dashboard role
    reads no table), and the per-group ones follow the dashboard's $defect variable, whose
    choices are the model's defect names."""
    from model.defects import DEFECTS

    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    [variable] = [v for v in dashboard["templating"]["list"] if v["name"] == "defect"]
    assert variable["type"] == "custom" and variable["query"].split(",") == list(DEFECTS)
    assert variable["current"]["value"] in DEFECTS
    read = {}
    for panel in _panels(dashboard):
        sql = " ".join(t.get("rawSql", "") for t in panel["targets"])
        read[panel["title"]] = set(re.findall(r"\bFROM\s+(qa_daily_defects_[a-z_]+)", sql))
        assert ("$defect" in panel["title"]) == ("'$defect'" in sql), panel["title"]
    assert set().union(*read.values()) == {
        "qa_daily_defects_by_station",
        "qa_daily_defects_by_operator",
        "qa_daily_defects_by_transducer",
    }
    assert sum(1 for views in read.values() if views) >= 6


def _migrated_sqlite(tmp_path: Path) -> str:
    import db

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    db.upgrade(url)
    return str(tmp_path / "ledger.db")


def _dashboard_sql(defect: str = "low_gain") -> list[str]:
    """The SQL of every ledger panel, with Grafana's time filter macro replaced and the
    dashboard's ``$defect`` variable set to ``defect``."""
    return list(_panel_sql(defect).values())


def _panel_sql(defect: str = "low_gain") -> dict[int, str]:
    """Panel id -> its SQL, as :func:`_dashboard_sql` runs it (one target per panel)."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found = {}
    for panel in _panels(dashboard):
        sql = [t["rawSql"] for t in panel["targets"] if "rawSql" in t]
        if sql:
            [raw] = sql
            raw = re.sub(r"\$__timeFilter\(([^)]*)\)", r"\1 IS NOT NULL", raw)
            found[panel["id"]] = raw.replace("$defect", defect)
    return found


def test_dashboard_sql_runs_against_the_views_on_sqlite(tmp_path: Path) -> None:
    """The SQL panels run as written once the qa_* views exist."""
    path = _migrated_sqlite(tmp_path)
    with sqlite3.connect(path) as conn:
        views = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='view'")}
        assert views >= LEDGER_VIEWS, views
        for sql in _dashboard_sql():
            conn.execute(sql).fetchall()


@pytest.mark.integration
def test_dashboard_sql_runs_against_the_views_on_postgresql(postgres_database: Any) -> None:
    """Grafana reads PostgreSQL: the same queries there, as the read-only dashboard role would."""
    from sqlalchemy import create_engine, text

    import db

    url = postgres_database()
    db.upgrade(url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            views = set(
                conn.execute(
                    text("SELECT viewname FROM pg_views WHERE schemaname = current_schema()")
                )
                .scalars()
                .all()
            )
            assert views >= LEDGER_VIEWS, views
            for sql in _dashboard_sql():
                conn.execute(text(sql)).fetchall()
    finally:
        engine.dispose()


@pytest.mark.integration
def test_defect_panels_on_a_seeded_postgresql_ledger(postgres_database: Any) -> None:
    """The defect panels' figures on PostgreSQL, worked out by hand. All on one day, scores
    below 45 are poor: scan 1 (A, op-a, L1, 40) lists low_gain; scan 2 (A, op-b, L1, 30)
    noise then low_gain; scan 3 (B, op-a, L2, 90) is clean; scan 4 (B, op-a, L2) is scored
    by a model without a defect head, so it is judged for nothing and counts nowhere."""
    from datetime import date
    from decimal import Decimal

    from sqlalchemy import create_engine, text

    import db
    from tests.helpers.ledger import Row, seed

    url = postgres_database()
    db.upgrade(url)
    day = date(2025, 3, 1)
    ledger_rows = [
        Row(day, 40, station="A", operator="op-a", transducer="L1",
            defects=(("low_gain", 0.8, 1.0),)),
        Row(day, 30, station="A", operator="op-b", transducer="L1",
            defects=(("noise", 0.9, 1.0), ("low_gain", 0.6, 0.5))),
        Row(day, 90, station="B", operator="op-a", transducer="L2"),
        Row(day, 20, station="B", operator="op-a", transducer="L2", version="v0",
            defect_head=False),
    ]  # fmt: skip
    seed(url, ledger_rows, start=1)

    def plain(value: Any) -> Any:
        return round(float(value), 4) if isinstance(value, Decimal | float) else value

    sql = _panel_sql("low_gain")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            got = {
                pid: [tuple(plain(v) for v in r) for r in conn.execute(text(sql[pid]))]
                for pid in (21, 22, 23, 24, 25, 26)
            }
    finally:
        engine.dispose()
    judged_3 = {m: v for _, m, v in got[21]}  # scans 1 2 3 are judged
    assert (judged_3["low_gain"], judged_3["noise"], judged_3["blur"]) == (0.6667, 0.3333, 0.0)
    first = {m: v for _, m, v in got[22] if v}
    assert first == {"low_gain": 0.3333, "noise": 0.3333}
    assert {m: v for _, m, v in got[23]} == {"A": 1.0, "B": 0.0}
    assert {m: v for _, m, v in got[24]} == {"op-a": 0.5, "op-b": 1.0}  # op-a: 1 of scans 1 3
    assert {m: v for _, m, v in got[25]} == {"L1 @ A": 1.0, "L2 @ B": 0.0}
    # kind, name, defect, judged, listed, listed_share, poor_listed (groups listing it only)
    assert set(got[26]) == {
        ("station", "A", "low_gain", 2, 2, 1.0, 2),
        ("station", "A", "noise", 2, 1, 0.5, 1),
        ("operator", "op-a", "low_gain", 2, 1, 0.5, 1),
        ("operator", "op-b", "low_gain", 1, 1, 1.0, 1),
        ("operator", "op-b", "noise", 1, 1, 1.0, 1),
        ("probe", "L1 @ A", "low_gain", 2, 2, 1.0, 2),
        ("probe", "L1 @ A", "noise", 2, 1, 0.5, 1),
    }
    assert len(got[26]) == 7 and got[26][0][5] == 1.0  # highest share first

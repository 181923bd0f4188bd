"""``usqa scans --defect NAME`` (SQLite and PostgreSQL): only scored scans whose current
outcome lists the defect, at any rank; a name outside the vocabulary is a usage error."""

from __future__ import annotations

import json
from datetime import date

import pytest

import db
from db import queries
from model.defects import DEFECTS
from tests.helpers.ledger import Row, seed, supersede
from worker.cli import main
from worker.commands.scans import check_defect

pytestmark = pytest.mark.integration

DAY = date(2025, 3, 1)
ROWS = [
    Row(DAY, 40, defects=(("low_gain", 0.8, 1.0),)),  # 1: low_gain first
    Row(DAY, 20, defects=(("dead_elements", 0.9, 1.0), ("low_gain", 0.6, 0.5))),  # 2: second
    Row(DAY, 90),  # 3: clean now; an earlier result by v-old listed low_gain
    Row(DAY, 50, version="v0", defect_head=False),  # 4: not judged
    Row(DAY, status="failed"),  # 5
    Row(DAY, status="queued"),  # 6
]


def ids(out: str) -> list[int]:
    return [json.loads(line)["id"] for line in out.splitlines()]


@pytest.fixture
def ledger_url(any_url: str) -> str:
    assert seed(any_url, ROWS, start=1) == [1, 2, 3, 4, 5, 6]
    supersede(any_url, 3, "v-old", "low_gain")
    return any_url


def test_scans_defect_lists_any_rank_of_the_current_outcome(
    ledger_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scans", "--json", "--defect", "low_gain", "--database-url", ledger_url]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["id"] for x in lines] == [1, 2]
    assert [d["name"] for d in lines[1]["defects"]] == ["dead_elements", "low_gain"]
    assert main(["scans", "--json", "--defect", "dead_elements", "--database-url", ledger_url]) == 0
    assert ids(capsys.readouterr().out) == [2]
    assert (
        main(["scans", "--defect", "low_gain", "--limit", "1", "--database-url", ledger_url]) == 0
    )
    table = capsys.readouterr().out
    assert "dead_elements" in table and "scan1.dcm" not in table
    assert main(["scans", "--defect", "blur", "--database-url", ledger_url]) == 0
    assert "no scans match" in capsys.readouterr().out
    args = ["scans", "--defect", "low_gain", "--status", "failed", "--database-url", ledger_url]
    assert main(args) == 0
    assert "no scans match" in capsys.readouterr().out
    assert main(["scans", "--json", "--database-url", ledger_url]) == 0  # unfiltered: all six
    assert ids(capsys.readouterr().out) == [1, 2, 3, 4, 5, 6]


def test_list_scans_takes_the_name_as_given(ledger_url: str) -> None:
    with db.session_scope(ledger_url, readonly=True) as s:
        assert [r["id"] for r in queries.list_scans(s, defect="low_gain")] == [1, 2]
        assert queries.list_scans(s, defect="not-a-defect") == []


def test_an_unknown_defect_name_is_a_usage_error(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scans", "--defect", "low-gain", "--database-url", sqlite_url]) == 2
    err = capsys.readouterr().err
    assert "--defect 'low-gain': not a defect name; did you mean low_gain?" in err
    assert ", ".join(DEFECTS) in err
    assert main(["scans", "--defect", "speckle", "--database-url", sqlite_url]) == 2
    assert "did you mean" not in capsys.readouterr().err
    assert check_defect("shadowing") == "shadowing"

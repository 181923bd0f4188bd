"""docs/sql.md: every SQL example runs as written on SQLite and PostgreSQL (on the HAND
ledger, where each returns rows), and every column of every view is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import text

import db

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "sql.md"
VIEWS = (
    "qa_scan_scores",
    "qa_scan_outcomes",
    "qa_daily_summary",
    "qa_daily_by_operator",
    "qa_daily_by_transducer",
    "qa_daily_by_body_part",
    "qa_model_versions",
    "qa_daily_defects_by_station",
    "qa_daily_defects_by_operator",
    "qa_daily_defects_by_transducer",
)


def sql_blocks() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_the_doc_has_examples() -> None:
    assert len(sql_blocks()) >= 12


def test_examples_run_as_written(hand_url: str) -> None:
    for block in sql_blocks():
        statement = block.strip().rstrip(";")
        assert ";" not in statement, "one statement per block"
        with db.session_scope(hand_url, readonly=True) as s:
            rows = s.execute(text(statement)).all()
        assert rows, f"no rows from:\n{block}"


def test_every_view_column_is_documented(hand_url: str) -> None:
    doc = DOC.read_text(encoding="utf-8")
    with db.session_scope(hand_url, readonly=True) as s:
        for view in VIEWS:
            assert f"`{view}`" in doc
            names = s.execute(text(f"SELECT * FROM {view} WHERE 1 = 0")).keys()
            for column in names:
                assert f"`{column}`" in doc, f"{view}.{column} is not in docs/sql.md"

"""Defects in the ledger on both databases: the 0003 migration, writing a scan's defects
(one by one and in a batch), reading them back through ``list_scans``, ``qa_scan_scores``
and ``usqa scans``, models without a defect head, and names outside the vocabulary."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from alembic import command
from sqlalchemy import delete, event, inspect, select, text

import db
from db import ledger, queries
from db.migrate import _config
from db.models import FrameScore, ModelVersion, Scan, ScanDefect, ScanScore
from model.defects import DEFECTS, DefectCall
from model.grading import Grading
from model.grading import ScanScore as Summary
from worker.cli import main
from worker.errors import ModelError

pytestmark = pytest.mark.integration

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
JUDGED = "judged000001"
BLIND = "blind0000001"  # a model without a defect head
_CONTENT = itertools.count()  # every file gets its own content


@pytest.fixture
def url(any_url: str) -> str:
    value = any_url
    with db.session_scope(value) as s:
        ledger.ensure_model_version(s, JUDGED, defect_names=DEFECTS)
        ledger.ensure_model_version(s, BLIND)
    return value


def summary(*defects: tuple[str, float, float], frames: tuple[str | None, ...] = ()) -> Summary:
    return Summary(
        score=40.0,
        mean=40.0,
        min=35.0,
        p10=36.0,
        grade="poor",
        frames_scored=max(len(frames), 1),
        defects=tuple(DefectCall(*d) for d in defects),
        defects_judged=True,
        frame_defects=frames,
    )


def claimed(url: str, count: int, token: str = "t") -> list[Scan]:
    with db.session_scope(url) as s:
        ids = [
            ledger.record_received(
                s, path=f"/drop/{i}.dcm", size_bytes=1, mtime_ns=1, sha256=f"{i:064x}", now=NOW
            ).id
            for i in itertools.islice(_CONTENT, count)
        ]
        ledger.heartbeat(s, name="host:1", hostname="host", pid=1, mode="embedded")
        return ledger.claim(
            s,
            ids,
            token=token,
            worker="host:1",
            stale_before=NOW - timedelta(hours=1),
            dead_before=NOW - timedelta(days=3650),
            now=NOW,
        )


def write(url: str, scan: Scan, result: Any, version: str = JUDGED, **kw: Any) -> bool:
    frames = kw.pop("frame_scores", [(0, 40.0)])
    with db.session_scope(url) as s:
        return ledger.write_score(
            s,
            scan,
            "t",
            model_version=version,
            aggregate="mean",
            summary=result,
            frame_scores=frames,
            vocabulary=DEFECTS,  # as the worker passes it: db imports nothing of model
            **kw,
        )


def listed(url: str) -> dict[int, dict[str, Any]]:
    with db.session_scope(url, readonly=True) as s:
        return {row["id"]: row for row in queries.list_scans(s)}


def test_a_scans_defects_are_stored_ranked_and_listed(url: str) -> None:
    [scan] = claimed(url, 1)
    result = summary(
        ("dead_elements", 0.91, 1.0),
        ("noise", 0.6, 0.5),
        frames=("dead_elements", None, "dead_elements", "noise"),
    )
    # frame scores out of order: frame_defects follow the frames sorted by index
    assert write(url, scan, result, frame_scores=[(9, 44.0), (0, 40.0), (3, 38.0), (6, 41.0)])
    with db.session_scope(url, readonly=True) as s:
        score = s.scalars(select(ScanScore)).one()
        rows = s.scalars(select(ScanDefect).order_by(ScanDefect.rank)).all()
        frames = s.scalars(select(FrameScore).order_by(FrameScore.frame_index)).all()
        view = s.execute(text("SELECT first_defect FROM qa_scan_scores")).scalar_one()
    assert score.first_defect == "dead_elements" == view
    assert [(r.defect, r.rank, r.probability, r.frame_share) for r in rows] == [
        ("dead_elements", 1, 0.91, 1.0),
        ("noise", 2, 0.6, 0.5),
    ]
    assert [(f.frame_index, f.first_defect) for f in frames] == [
        (0, "dead_elements"),
        (3, None),
        (6, "dead_elements"),
        (9, "noise"),
    ]
    row = listed(url)[scan.id]
    assert row["first_defect"] == "dead_elements"
    assert row["defects"] == [
        {"name": "dead_elements", "probability": 0.91, "frames": 1.0},
        {"name": "noise", "probability": 0.6, "frames": 0.5},
    ]


def test_a_graded_summary_is_written_as_the_model_summarises_it(url: str) -> None:
    [scan] = claimed(url, 1)
    probabilities = [[0.0] * len(DEFECTS) for _ in range(3)]
    for frame, p in zip(probabilities, (0.9, 0.8, 0.2), strict=True):
        frame[DEFECTS.index("no_signal")] = p
    result = Grading().summarise([70.0, 72.0, 71.0], probabilities)
    assert write(url, scan, result, frame_scores=[(0, 70.0), (1, 72.0), (2, 71.0)])
    row = listed(url)[scan.id]
    assert row["grade"] == "poor" and row["first_defect"] == "no_signal"
    assert row["defects"] == [d.as_dict() for d in result.defects]
    with db.session_scope(url, readonly=True) as s:
        frames = s.scalars(select(FrameScore.first_defect).order_by(FrameScore.frame_index))
        assert list(frames) == ["no_signal", "no_signal", None]


def test_clean_unjudged_and_unscored_scans_are_told_apart(url: str) -> None:
    clean, blind, plain, waiting = claimed(url, 4)
    assert write(url, clean, summary())
    assert write(url, blind, summary(), version=BLIND)
    # a summary from before defects (no defect fields at all) stores NULLs and no rows
    old = type("Old", (), dict(score=60.0, mean=60.0, min=55.0, p10=56.0, grade="average",
                               frames_scored=1))()  # fmt: skip
    assert write(url, plain, old)
    rows = listed(url)
    assert (rows[clean.id]["first_defect"], rows[clean.id]["defects"]) == (None, [])
    assert (rows[blind.id]["first_defect"], rows[blind.id]["defects"]) == (None, None)
    assert (rows[plain.id]["first_defect"], rows[plain.id]["defects"]) == (None, [])
    assert rows[waiting.id]["status"] == "processing" and rows[waiting.id]["defects"] is None
    with db.session_scope(url, readonly=True) as s:
        assert s.scalar(select(ScanDefect.scan_id)) is None
        assert set(s.scalars(select(FrameScore.first_defect))) == {None}


def test_a_batch_writes_every_scans_defects_in_a_fixed_number_of_statements(url: str) -> None:
    for count in (2, 5):
        scans = claimed(url, count, token=f"batch{count}")
        with db.session_scope(url) as s:
            s.execute(text("SELECT 1"))  # begin on SQLite before counting
            entries = [
                ledger.ScoreEntry(
                    scan=scan,
                    summary=summary(("blur", 0.7, 1.0), frames=("blur", "blur"))
                    if i % 2
                    else summary(frames=(None, None)),
                    frame_scores=[(0, 40.0), (1, 41.0)],
                )
                for i, scan in enumerate(scans)
            ]
            with statements(s) as seen:
                assert ledger.write_scores(s, f"batch{count}", entries, JUDGED, "mean")
            # lock, update scans, insert scores, defects and frames: one statement each
            assert len(seen) == 5, seen
        rows = listed(url)
        got = [(rows[scan.id]["first_defect"], rows[scan.id]["defects"]) for scan in scans]
        blur = [{"name": "blur", "probability": 0.7, "frames": 1.0}]
        assert got == [(None, []) if i % 2 == 0 else ("blur", blur) for i in range(count)]
    with db.session_scope(url, readonly=True) as s:
        view = s.execute(
            text("SELECT first_defect, COUNT(*) FROM qa_scan_scores GROUP BY first_defect")
        ).all()
    assert {(k, int(n)) for k, n in view} == {(None, 4), ("blur", 3)}


@contextmanager
def statements(session: Any) -> Iterator[list[str]]:
    """The SQL statements sent on ``session``'s connection while inside."""
    seen: list[str] = []
    conn = session.connection()

    def count(*args: Any) -> None:
        seen.append(" ".join(str(args[2]).split()[:3]))

    event.listen(conn, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(conn, "before_cursor_execute", count)


@pytest.mark.parametrize(
    "bad",
    [
        summary(("dead_pixels", 0.9, 1.0)),
        summary(("blur", 0.9, 1.0), ("blur", 0.8, 1.0)),
        summary(frames=("speckle",)),
        summary(frames=("blur", None)),  # two frame defects for one frame score
    ],
)
def test_bad_defects_are_refused_before_anything_is_written(url: str, bad: Summary) -> None:
    [one, two] = claimed(url, 2)
    with pytest.raises(ModelError, match="defect"):
        write(url, one, bad)
    with db.session_scope(url) as s, pytest.raises(ModelError, match="defect"):
        entries = [ledger.ScoreEntry(two, bad, [(0, 40.0)])]
        ledger.write_scores(s, "t", entries, JUDGED, "mean", vocabulary=DEFECTS)
    with db.session_scope(url, readonly=True) as s:
        assert set(s.scalars(select(Scan.status))) == {"processing"}
        assert s.scalar(select(ScanScore.id)) is None


def test_model_versions_keep_the_defect_names_they_judge(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with db.session_scope(url) as s:
        ledger.ensure_model_version(s, BLIND, defect_names=())  # empty: still no head
        ledger.ensure_model_version(s, "later0000001")
        ledger.ensure_model_version(s, "later0000001", defect_names=["blur", "noise"])  # filled
        ledger.ensure_model_version(s, "later0000001", defect_names=["blur"])  # kept, warned
        with pytest.raises(ModelError, match=r"'speckle'.*model\.defects\.DEFECTS"):
            ledger.ensure_model_version(
                s, "bad000000001", defect_names=["blur", "speckle"], vocabulary=DEFECTS
            )
        with pytest.raises(ModelError, match="twice"):
            ledger.ensure_model_version(s, "bad000000001", defect_names=["blur", "blur"])
    with db.session_scope(url, readonly=True) as s:
        names = dict(s.execute(select(ModelVersion.version, ModelVersion.defect_names)).all())
    assert json.loads(cast(str, names[JUDGED])) == list(DEFECTS)
    assert names[BLIND] is None and "bad000000001" not in names
    assert json.loads(cast(str, names["later0000001"])) == ["blur", "noise"]
    assert "keeping the ledger's" in caplog.text


def test_usqa_scans_shows_the_first_defect(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    sick, clean, blind = claimed(url, 3)
    assert write(url, sick, summary(("shadowing", 0.8, 0.75)))
    assert write(url, clean, summary())
    assert write(url, blind, summary(), version=BLIND)
    assert main(["scans", "--database-url", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "defect" in lines[0].split()
    cells = {int(line.split()[0]): line.split() for line in lines[1:]}
    assert cells[sick.id][4] == "shadowing" and cells[clean.id][4] == "clean"
    assert cells[blind.id][4] == "1"  # blank defect cell: the attempts come next
    assert main(["scans", "--json", "--database-url", url]) == 0
    rows = {r["id"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows[sick.id]["first_defect"] == "shadowing"
    assert rows[sick.id]["defects"] == [{"name": "shadowing", "probability": 0.8, "frames": 0.75}]
    assert rows[clean.id]["defects"] == [] and rows[blind.id]["defects"] is None


def test_deleting_a_scan_deletes_its_defects(url: str) -> None:
    [scan] = claimed(url, 1)
    assert write(url, scan, summary(("blur", 0.9, 1.0)))
    with db.session_scope(url) as s:
        s.execute(delete(ScanScore))
        s.execute(delete(FrameScore))
        s.execute(delete(Scan))
    with db.session_scope(url, readonly=True) as s:
        assert s.scalar(select(ScanDefect.scan_id)) is None


def test_0003_upgrades_and_downgrades_an_existing_ledger(url: str) -> None:
    [scan] = claimed(url, 1)
    assert write(url, scan, summary(("blur", 0.9, 1.0)))
    cfg = _config(url)
    with db.get_engine(url).begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0002")
    with db.get_engine(url).connect() as conn:
        schema = inspect(conn)
        assert "scan_defects" not in schema.get_table_names()
        assert "first_defect" not in {c["name"] for c in schema.get_columns("scan_scores")}
        keys = conn.execute(text("SELECT * FROM qa_scan_scores")).keys()
        assert list(keys)[-1] == "model_version" and "first_defect" not in keys
    assert db.upgrade(url) == ("0002", db.head_revision())
    rows = listed(url)
    assert rows[scan.id]["score"] == 40.0 and rows[scan.id]["first_defect"] is None
    assert rows[scan.id]["defects"] is None  # the downgrade dropped the defect names too
    with db.session_scope(url) as s:
        ledger.ensure_model_version(s, JUDGED, defect_names=DEFECTS)
    assert listed(url)[scan.id]["defects"] == []

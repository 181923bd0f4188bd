"""process_scans with a model that names defects and has the not-ultrasound gate: the ledger
stores each scan's defects, the outcome line names the first, the gate's scans end skipped.
Real files, real decoder child, real SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import select

import db
from db import queries
from db.models import FrameScore, ModelVersion, Scan, ScanDefect, ScanScore
from tests.helpers.files import copy_dicom, make_settings, write_png
from tests.helpers.ledger import receive
from worker.scoring import ScoringContext, process_scans

pytestmark = pytest.mark.integration


def _run(url: str, weights: Path, files: list[Path]) -> tuple[ScoringContext, list[int], dict]:
    ids = [receive(url, p) for p in files]
    pipeline = ScoringContext(make_settings(url, weights))
    pipeline.start()
    try:
        result = process_scans(ids, pipeline)
    finally:
        pipeline.close()
    return pipeline, ids, result.statuses


def test_defects_are_stored_listed_and_logged(
    any_url: str, tmp_path: Path, shadowing_weights: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = [
        write_png(tmp_path / "a.png", 1),
        copy_dicom("examples_ybr_color.dcm", tmp_path / "c.dcm"),
    ]
    with caplog.at_level(logging.INFO, logger="worker.scoring"):
        pipeline, ids, statuses = _run(any_url, shadowing_weights, files)
    assert set(statuses.values()) == {"scored"}
    version = pipeline.model_version
    with db.session_scope(any_url, readonly=True) as s:
        scores = {x.scan_id: x for x in s.scalars(select(ScanScore)).all()}
        assert {x.first_defect for x in scores.values()} == {"shadowing"}
        rows = s.scalars(select(ScanDefect).order_by(ScanDefect.scan_id, ScanDefect.rank)).all()
        assert [(r.scan_id, r.defect, r.rank) for r in rows] == [
            (ids[0], "shadowing", 1),
            (ids[0], "blur", 2),
            (ids[1], "shadowing", 1),
            (ids[1], "blur", 2),
        ]
        frames = s.scalars(select(FrameScore).where(FrameScore.scan_id == ids[1])).all()
        assert len(frames) == 16 and {f.first_defect for f in frames} == {"shadowing"}
        model = s.get(ModelVersion, version)
        assert model is not None and model.defect_names is not None
        listed = queries.list_scans(s)
    assert [r["first_defect"] for r in listed] == ["shadowing", "shadowing"]
    assert [d["name"] for d in listed[0]["defects"]] == ["shadowing", "blur"]
    said = [r.getMessage() for r in caplog.records if getattr(r, "scan_id", None) in ids]
    assert len(said) == 2 and all(", shadowing): " in m for m in said), said
    assert all(
        getattr(r, "first_defect", None) == "shadowing"
        for r in caplog.records
        if getattr(r, "scan_id", None) in ids
    )


def test_what_is_not_ultrasound_is_skipped_and_never_scored(
    any_url: str, tmp_path: Path, not_ultrasound_weights: Path
) -> None:
    _, ids, statuses = _run(any_url, not_ultrasound_weights, [write_png(tmp_path / "w.png", 3)])
    assert statuses == {ids[0]: "skipped"}
    with db.session_scope(any_url, readonly=True) as s:
        scan = s.get(Scan, ids[0])
        assert scan is not None and "not an ultrasound image" in (scan.reason or "")
        assert s.scalars(select(ScanScore)).all() == []

"""Results back (worker/results/): a scored DICOM scan queues its structured report in
the transaction of its score; the delivery loop writes it to the results folder, or
C-STOREs it to a PACS (a pynetdicom Storage SCP on a free port standing in): a PACS that
is down, then up, gets each report once. Real scoring path, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import highdicom.sr as hsr
import pydicom
import pytest
from pydicom.sr.codedict import codes
from pynetdicom import AE, evt
from sqlalchemy import select, update

import db
from db import ledger
from db.models import ResultOutbox, ScanScore
from tests.helpers.files import copy_dicom, write_png
from tests.helpers.ledger import receive, scans
from tests.helpers.poll import until
from worker.cli import main
from worker.ingest.disposal import dispose_scored
from worker.ops import metrics
from worker.results import sr
from worker.results.kos import KOS_CLASS
from worker.results.outbox import Deliverer
from worker.scoring import ScoringContext, process_scans

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Pacs:
    """A Storage SCP that accepts only ``sop_classes`` and keeps what it receives."""

    def __init__(self, port: int, sop_classes: tuple[str, ...]) -> None:
        self.port = port
        self.received: list[pydicom.Dataset] = []
        self.ae = AE(ae_title="PACS")
        for sop_class in sop_classes:
            self.ae.add_supported_context(sop_class)
        self.server: Any = None

    def _store(self, event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        self.received.append(ds)
        return 0x0000

    def __enter__(self) -> Pacs:
        self.server = self.ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()


def outbox(url: str) -> list[ResultOutbox]:
    with db.session_scope(url, readonly=True) as s:
        return list(s.scalars(select(ResultOutbox).order_by(ResultOutbox.id)).all())


def make_due(url: str) -> None:
    """Skip the backoff wait: every pending row due now (the clock's time)."""
    with db.session_scope(url) as s:
        now = ledger.db_now(s)
        s.execute(update(ResultOutbox).values(next_attempt_at=now - timedelta(seconds=1)))


def ledger_score(url: str, scan_id: int) -> float:
    with db.session_scope(url, readonly=True) as s:
        return float(s.scalars(select(ScanScore.score).where(ScanScore.scan_id == scan_id)).one())


@pytest.fixture
def scored(
    any_url: str, tmp_path: Path, pipeline_for: Callable[..., ScoringContext]
) -> Iterator[Callable[..., tuple[ScoringContext, int]]]:
    """Scores the real cine (and a PNG, which gets no report) with given settings."""

    def score(**overrides: Any) -> tuple[ScoringContext, int]:
        cine = receive(any_url, copy_dicom("examples_ybr_color.dcm", tmp_path / "in/cine.dcm"))
        png = receive(any_url, write_png(tmp_path / "in/a.png", 1))
        pipeline = pipeline_for(any_url, **overrides)
        result = process_scans([cine, png], pipeline)
        assert result.statuses == {cine: "scored", png: "scored"}
        return pipeline, cine

    yield score


def test_a_scored_scan_gets_one_report_file(
    any_url: str, tmp_path: Path, scored: Callable[..., tuple[ScoringContext, int]]
) -> None:
    folder = tmp_path / "results"
    pipeline, cine = scored(results_dir=folder)
    [row] = outbox(any_url)  # the DICOM scan only, in the transaction of its score
    assert (row.scan_id, row.state, row.attempts) == (cine, "pending", 0)
    assert row.destination == f"dir:{folder.resolve()}"
    deliverer = Deliverer(pipeline.settings)
    assert deliverer.deliver_once().sent == 1
    [path] = folder.glob("*.dcm")
    assert not list(folder.glob(".usqa-sr-*"))  # no temporary file left
    report: Any = hsr.srread(path)
    [group] = report.content.get_image_measurement_groups()
    [rating] = group.get_measurements(name=codes.DCM.ImageQualityRating)
    assert rating.value == pytest.approx(round(ledger_score(any_url, cine), 2))
    [row] = outbox(any_url)
    assert (row.state, row.attempts, row.sr_sop_instance_uid) == (
        "sent",
        1,
        path.name.removesuffix(".dcm"),
    )
    assert deliverer.deliver_once().sent == 0  # delivered once


def test_pacs_down_then_up_gets_each_report_once(
    any_url: str,
    scored: Callable[..., tuple[ScoringContext, int]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    pipeline, _ = scored(send_results_to=f"PACS@127.0.0.1:{port}")
    deliverer = Deliverer(pipeline.settings)
    down = deliverer.deliver_once()  # nobody listens on the port yet
    assert (down.sent, down.retried, down.failed) == (0, 1, 0)
    [row] = outbox(any_url)
    assert (row.state, row.attempts) == ("pending", 1)
    assert row.last_error and "association" in row.last_error
    assert main(["status", "--json", "--database-url", any_url]) == 0
    shown = json.loads(capsys.readouterr().out)["results"]
    assert shown["counts"] == {"pending": 1, "sent": 0, "failed": 0}
    assert shown["oldest_pending"]["last_error"] == row.last_error
    assert deliverer.deliver_once().retried == 0  # not due again before its backoff

    # the PACS comes up, accepting Enhanced SR only: the report is built as one
    with Pacs(port, (sr.ENHANCED_SR,)) as pacs:
        make_due(any_url)
        assert deliverer.deliver_once().sent == 1
        until(lambda: pacs.received, 10, "the report at the PACS")
        make_due(any_url)
        assert deliverer.deliver_once().sent == 0
    [got] = pacs.received
    assert got.SOPClassUID == sr.ENHANCED_SR
    [row] = outbox(any_url)
    assert (row.state, row.attempts, row.sr_sop_instance_uid) == ("sent", 2, got.SOPInstanceUID)
    text = metrics_text()
    assert 'usqa_results_outbox{state="sent"} 1.0' in text
    assert 'usqa_results_outbox{state="pending"} 0.0' in text
    assert main(["status", "--database-url", any_url]) == 0
    assert "results outbox: pending 0, sent 1, failed 0" in capsys.readouterr().out


def metrics_text() -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.metrics().registry).decode()


def test_the_delivery_thread_delivers_and_two_deliverers_share_the_work(
    any_url: str, tmp_path: Path, scored: Callable[..., tuple[ScoringContext, int]]
) -> None:
    port = free_port()
    pipeline, _ = scored(send_results_to=f"PACS@127.0.0.1:{port}")
    with Pacs(port, sr.SR_CLASSES) as pacs:
        first = Deliverer(pipeline.settings, every=0.05)
        second = Deliverer(pipeline.settings, every=0.05)
        first.start()
        second.start()
        try:
            until(lambda: outbox(any_url)[0].state == "sent", 20, "the report sent")
        finally:
            first.stop()
            second.stop()
    [got] = pacs.received
    assert got.SOPClassUID == sr.COMPREHENSIVE_SR  # the first preference, when accepted


def test_a_report_whose_file_is_gone_fails_with_the_reason(
    any_url: str, tmp_path: Path, scored: Callable[..., tuple[ScoringContext, int]]
) -> None:
    pipeline, _ = scored(results_dir=tmp_path / "results")
    (tmp_path / "in/cine.dcm").unlink()
    done = Deliverer(pipeline.settings).deliver_once()
    assert (done.sent, done.retried, done.failed) == (0, 0, 1)
    [row] = outbox(any_url)
    assert row.state == "failed" and "gone" in (row.last_error or "")
    assert 'usqa_results_outbox{state="failed"} 1.0' in metrics_text()


def dcmtk_tool(name: str) -> str | None:
    """dcmtk's ``name`` (not pynetdicom's script of the same name in the virtualenv)."""
    venv = Path(sys.prefix).resolve()
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    outside = [d for d in dirs if not Path(d).resolve().is_relative_to(venv)]
    return shutil.which(name, path=os.pathsep.join(outside))


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_dcmtk_storescp_stores_the_report_once(
    any_url: str, tmp_path: Path, scored: Callable[..., tuple[ScoringContext, int]]
) -> None:
    storescp = dcmtk_tool("storescp")
    if storescp is None:
        pytest.skip("dcmtk's storescp is not installed (tests/bootstrap.sh installs it)")
    port = free_port()
    pipeline, cine = scored(send_results_to=f"PACS@127.0.0.1:{port}")
    received = tmp_path / "pacs"
    received.mkdir()
    peer = subprocess.Popen(
        [storescp, "--aetitle", "PACS", "--output-directory", str(received), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        until(lambda: listening(port) or peer.poll() is not None, 20, "storescp listening")
        assert peer.poll() is None, peer.stderr.read() if peer.stderr else ""
        deliverer = Deliverer(pipeline.settings)
        assert deliverer.deliver_once().sent == 1
        [path] = until(lambda: list(received.glob("SR*")), 20, "the report stored by storescp")
        make_due(any_url)
        assert deliverer.deliver_once().sent == 0
    finally:
        peer.terminate()
        peer.wait(10)
    got = pydicom.dcmread(path)
    assert got.SOPClassUID == sr.COMPREHENSIVE_SR
    [row] = outbox(any_url)
    assert (row.state, row.sr_sop_instance_uid) == ("sent", got.SOPInstanceUID)
    [group] = hsr.srread(path).content.get_image_measurement_groups()  # type: ignore[attr-defined]
    [rating] = group.get_measurements(name=codes.DCM.ImageQualityRating)
    assert rating.value == pytest.approx(round(ledger_score(any_url, cine), 2))


def test_a_file_to_delete_waits_for_its_report(
    any_url: str, tmp_path: Path, scored: Callable[..., tuple[ScoringContext, int]]
) -> None:
    pipeline, cine = scored(results_dir=tmp_path / "results", after_scoring="delete")
    root, path = str(tmp_path / "in"), tmp_path / "in" / "cine.dcm"
    dispose_scored(root, pipeline.settings, {})
    assert path.exists() and not (tmp_path / "in" / "a.png").exists()  # the PNG has no report
    assert Deliverer(pipeline.settings).deliver_once().sent == 1
    dispose_scored(root, pipeline.settings, {})
    assert not path.exists()
    [scan] = [s for s in scans(any_url) if s.id == cine]
    assert scan.disposition == "deleted"


def test_a_poor_scan_sends_its_quality_issue_selection_after_the_report(
    any_url: str, scored: Callable[..., tuple[ScoringContext, int]]
) -> None:
    port = free_port()
    pipeline, _ = scored(send_results_to=f"PACS@127.0.0.1:{port}")
    with db.session_scope(any_url) as s:  # the random test model scores high: make it poor
        s.execute(update(ScanScore).values(grade="poor"))
    with Pacs(port, (*sr.SR_CLASSES, KOS_CLASS)) as pacs:
        deliverer = Deliverer(pipeline.settings)
        assert deliverer.deliver_once().sent == 1
        until(lambda: len(pacs.received) == 2, 10, "the report and the selection")
        assert deliverer.deliver_once().sent == 0
    assert [d.SOPClassUID for d in pacs.received] == [sr.COMPREHENSIVE_SR, KOS_CLASS]

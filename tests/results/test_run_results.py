"""Done-when, end to end: a cine sent by storescu to `usqa run --listen` is scored once,
and its structured report reaches a PACS that was down when the scan was scored (dcmtk's
storescp standing in, started later on the same port), once, with the ledger's score; the
results folder gets its copy too."""

from __future__ import annotations

import subprocess
from pathlib import Path

import highdicom.sr as hsr
import pydicom
import pytest
from pydicom.sr.codedict import codes

from tests.helpers.files import copy_dicom, env_for, write_png
from tests.helpers.ledger import query_rows, scans
from tests.helpers.poll import until
from tests.listener.peers import await_echo, free_port, pynetdicom_app, usqa_listening
from tests.listener.test_peers import CINE
from tests.worker.test_results_outbox import dcmtk_tool, listening
from worker.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def outbox_states(url: str) -> list[tuple[str, str, int]]:
    rows = query_rows(url, "SELECT destination, state, attempts FROM result_outbox ORDER BY id")
    return [(r["destination"], r["state"], r["attempts"]) for r in rows]


def test_usqa_run_listen_sends_the_report_once_after_the_pacs_comes_up(
    tmp_path: Path, sqlite_url: str, random_weights: Path
) -> None:
    storescp = dcmtk_tool("storescp")
    if storescp is None:
        pytest.skip("dcmtk's storescp is not installed (tests/bootstrap.sh installs it)")
    port, pacs_port = free_port(), free_port()
    env = env_for(tmp_path, random_weights)
    env.update(
        USQA_DATABASE_URL=sqlite_url,
        USQA_DICOM_ADDRESS="127.0.0.1",
        USQA_SEND_RESULTS_TO=f"PACS@127.0.0.1:{pacs_port}",
        USQA_RESULTS_DIR=str(tmp_path / "results"),
    )
    received = tmp_path / "pacs"
    received.mkdir()
    pacs_command = [storescp, "--aetitle", "PACS", "--output-directory", str(received)]
    pacs: subprocess.Popen[bytes] | None = None
    try:
        with usqa_listening(tmp_path, env, port, "run", "--listen"):
            await_echo(port, 120, "`usqa run --listen` to answer C-ECHO")
            store = pynetdicom_app("storescu", port, str(CINE), "-cx")
            assert store.returncode == 0, store.stderr
            until(
                lambda: any(
                    d.startswith("PACS@") and n >= 1 for d, _, n in outbox_states(sqlite_url)
                ),
                120,
                "a first, failed try to reach the PACS",
                interval=0.5,
            )
            pacs = subprocess.Popen(
                [*pacs_command, str(pacs_port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            until(lambda: listening(pacs_port), 20, "storescp listening")
            until(
                lambda: [s for _, s, _ in outbox_states(sqlite_url)] == ["sent", "sent"],
                120,
                "the report sent after the backoff",
                interval=0.5,
            )
    finally:
        if pacs is not None:
            pacs.terminate()
            pacs.wait(10)
    [scan] = scans(sqlite_url)
    [score] = query_rows(sqlite_url, "SELECT score FROM scan_scores")
    [sent] = list(received.glob("SR*"))  # once, although it was tried before (KO*: a KOS)
    [copy] = [
        p
        for p in (tmp_path / "results").glob("*.dcm")
        if pydicom.dcmread(p, stop_before_pixels=True).Modality == "SR"
    ]
    for path in (sent, copy):
        report = hsr.srread(path)
        [group] = report.content.get_image_measurement_groups()  # type: ignore[attr-defined]
        [rating] = group.get_measurements(name=codes.DCM.ImageQualityRating)
        assert rating.value == pytest.approx(round(float(score["score"]), 2))
        [image] = group.source_images
        assert image.referenced_sop_instance_uid == scan.sop_instance_uid
    assert pydicom.dcmread(sent).SOPInstanceUID == pydicom.dcmread(copy).SOPInstanceUID


def test_usqa_run_once_writes_the_reports_before_it_exits(
    tmp_path: Path, random_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in env_for(tmp_path, random_weights).items():
        if key.startswith("USQA_"):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("USQA_BROKER_URL", raising=False)
    monkeypatch.setenv("USQA_DATABASE_URL", f"sqlite:///{tmp_path / 'usqa.db'}")
    monkeypatch.setenv("USQA_RESULTS_DIR", str(tmp_path / "results"))
    copy_dicom("examples_ybr_color.dcm", tmp_path / "drop" / "cine.dcm")
    write_png(tmp_path / "drop" / "a.png", 1)
    assert main(["run", "--watch", str(tmp_path / "drop"), "--once"]) == 0
    classes = [pydicom.dcmread(p).SOPClassUID for p in (tmp_path / "results").glob("*.dcm")]
    # the cine's SR (and its KOS, were it poor); a PNG gets none
    assert [c for c in classes if c != "1.2.840.10008.5.1.4.1.1.88.59"] == [
        "1.2.840.10008.5.1.4.1.1.88.33"
    ]
    url = f"sqlite:///{tmp_path / 'usqa.db'}"
    assert [s for _, s, _ in outbox_states(url)] == ["sent"]

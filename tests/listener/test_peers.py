"""Other programs as senders: pynetdicom's own echoscu and storescu, and dcmtk's, as
subprocesses; and `usqa run --listen` end to end (a file sent by storescu is scored once)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from tests.helpers.dicom import save
from tests.helpers.files import env_for
from tests.helpers.ledger import query_rows, scans, settled
from tests.helpers.poll import until
from tests.listener.conftest import Running
from tests.listener.peers import await_echo, free_port, pynetdicom_app, usqa_listening
from tests.listener.test_receive import ct_image

pytestmark = pytest.mark.timeout(300)

CINE = Path(str(get_testdata_file("examples_ybr_color.dcm")))
FRAME = Path(str(get_testdata_file("examples_rgb_color.dcm")))
# pynetdicom installs console scripts of the same names in the virtual environment
_SYSTEM_PATH = os.pathsep.join(
    p for p in os.environ.get("PATH", "").split(os.pathsep) if not p.startswith(sys.prefix)
)
DCMTK = {app: shutil.which(app, path=_SYSTEM_PATH) for app in ("storescu", "echoscu", "dcmsend")}
needs_dcmtk = pytest.mark.skipif(
    None in DCMTK.values(), reason="dcmtk is not installed (tests/bootstrap.sh installs it)"
)


def dcmtk(app: str, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(DCMTK[app]), "-aec", "USQA", "-aet", "SCANNER", *args, "127.0.0.1", str(port)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def dcmtk_store(port: int, *files: Path, app: str = "storescu") -> subprocess.CompletedProcess[str]:
    """dcmtk's storescu (uncompressed files: it offers a compressed file's syntax beside the
    uncompressed ones and then cannot decompress, with pynetdicom's own storescp as well) or
    dcmsend (any file: it proposes each file's own syntax)."""
    command = [str(DCMTK[app]), "-aec", "USQA", "-aet", "SCANNER", "127.0.0.1", str(port)]
    return subprocess.run([*command, *map(str, files)], capture_output=True, text=True, timeout=120)


def test_pynetdicom_apps_echo_and_store(start_listener: Callable[..., Running]) -> None:
    running = start_listener()
    echo = pynetdicom_app("echoscu", running.port)
    assert echo.returncode == 0, echo.stderr
    store = pynetdicom_app("storescu", running.port, str(CINE), "-cx")
    assert store.returncode == 0, store.stderr
    (row,) = scans(running.url)
    assert row.status == "queued" and row.size_bytes > 0


@needs_dcmtk
def test_dcmtk_echo_and_store(start_listener: Callable[..., Running], tmp_path: Path) -> None:
    running = start_listener()
    echo = dcmtk("echoscu", running.port)
    assert echo.returncode == 0, echo.stderr
    ct = save(ct_image(), tmp_path / "ct.dcm")
    store = dcmtk_store(running.port, FRAME, ct)
    assert store.returncode == 0, store.stdout + store.stderr
    cine = dcmtk_store(running.port, CINE, app="dcmsend")
    assert cine.returncode == 0, cine.stdout + cine.stderr
    assert len(scans(running.url)) == 3
    again = dcmtk_store(running.port, CINE, app="dcmsend")  # sent again: nothing added
    assert again.returncode == 0, again.stderr
    assert len(scans(running.url)) == 3


@needs_dcmtk
def test_an_unknown_calling_ae_is_refused_by_dcmtk(
    start_listener: Callable[..., Running],
) -> None:
    running = start_listener(dicom_allowed_aes=("OTHER",))
    echo = dcmtk("echoscu", running.port)
    assert echo.returncode != 0
    assert "Rejected" in echo.stdout + echo.stderr


def test_usqa_run_listen_scores_a_sent_file_once(
    tmp_path: Path, sqlite_url: str, random_weights: Path
) -> None:
    port = free_port()
    env = env_for(tmp_path, random_weights)
    env.update(USQA_DATABASE_URL=sqlite_url, USQA_DICOM_ADDRESS="127.0.0.1")
    with usqa_listening(tmp_path, env, port, "run", "--listen"):
        await_echo(port, 120, "`usqa run --listen` to answer C-ECHO")
        ct = save(ct_image(), tmp_path / "ct.dcm")
        for path in (CINE, ct):
            store = pynetdicom_app("storescu", port, str(path), "-cx")
            assert store.returncode == 0, store.stderr
        store = pynetdicom_app("storescu", port, str(CINE), "-cx")  # sent again
        assert store.returncode == 0, store.stderr
        until(
            lambda: settled(sqlite_url, 2),
            180,
            "both received files to be scored or skipped",
            interval=0.5,
        )
        by_modality = {r.modality: r for r in scans(sqlite_url)}
        assert by_modality["US"].status == "scored", by_modality["US"].reason
        scores = query_rows(sqlite_url, "SELECT scan_id FROM scan_scores")
        assert [r["scan_id"] for r in scores] == [by_modality["US"].id]  # scored once
        assert by_modality["CT"].status == "skipped", by_modality["CT"].reason


def test_usqa_listen_records_queues_and_reports_healthy(
    tmp_path: Path, postgres_ledger: Callable[[], str], redis_url: str, random_weights: Path
) -> None:
    url = postgres_ledger()
    port = free_port()
    heartbeat = tmp_path / "heartbeat.json"
    env = env_for(tmp_path, random_weights)
    env.update(
        USQA_DATABASE_URL=url,
        USQA_BROKER_URL=redis_url,
        USQA_DICOM_ADDRESS="127.0.0.1",
        USQA_HEARTBEAT_FILE=str(heartbeat),
    )
    with usqa_listening(tmp_path, env, port, "listen", log="listen.log", stop_timeout=30) as log:
        await_echo(port, 60, "`usqa listen` to answer C-ECHO")
        store = pynetdicom_app("storescu", port, str(FRAME), "-cx")
        assert store.returncode == 0, store.stderr
        (row,) = scans(url)
        assert row.status == "queued" and row.path.startswith(str(tmp_path / "drop" / "dicom"))
        health = subprocess.run(
            [sys.executable, "-m", "worker.cli", "health"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert health.returncode == 0, health.stdout + health.stderr
    text = log.read_text()
    assert "could not queue" not in text, text[-3000:]

"""Orthanc as the sender: Debian's `Orthanc`, run unprivileged as a subprocess on free loopback
ports with its own configuration (no plugins), forwards a cine and a single frame to a running
`usqa run --listen` through its REST API (``POST /modalities/usqa/store``), as a PACS that routes
to usqa would. Each scan is scored once; a second store of the same instances adds nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.files import env_for
from tests.helpers.ledger import query_rows, scans, settled
from tests.helpers.poll import until
from tests.listener.peers import free_port, usqa_listening
from tests.listener.test_peers import CINE, FRAME

pytestmark = pytest.mark.timeout(420)

# Debian installs it in /usr/sbin, which an ordinary user's PATH may leave out
ORTHANC = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin:/usr/local/sbin")


class Orthanc:
    """A running Orthanc and its REST API on 127.0.0.1."""

    def __init__(self, proc: subprocess.Popen[bytes], http_port: int, log: Path) -> None:
        self.proc = proc
        self.base = f"http://127.0.0.1:{http_port}"
        self.log = log

    def call(self, method: str, path: str, body: bytes | dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        request = urllib.request.Request(self.base + path, data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=120) as answer:
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as e:
            raise AssertionError(
                f"Orthanc {method} {path}: HTTP {e.code} {e.read()[:2000]!r}\n{self.tail()}"
            ) from e

    def echo(self) -> bool:
        """Orthanc's C-ECHO to the modality ``usqa`` succeeded."""
        try:
            self.call("POST", "/modalities/usqa/echo", {})
        except AssertionError:  # HTTP 500: the association failed
            return False
        return True

    def up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"Orthanc exited ({self.proc.returncode}):\n{self.tail()}")
        try:
            return bool(self.call("GET", "/system"))
        except (OSError, AssertionError):
            return False

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Any]:
    """``orthanc(usqa_port)``: a started Orthanc whose modality ``usqa`` is USQA@127.0.0.1."""
    if ORTHANC is None:
        message = "Debian's orthanc is not installed: run tests/bootstrap.sh (it installs it)"
        if os.environ.get("USQA_TEST_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    started: list[Orthanc] = []

    def start(usqa_port: int) -> Orthanc:
        home = tmp_path / "orthanc"
        home.mkdir()
        http_port, dicom_port = free_port(), free_port()
        config = {
            "Name": "usqa-test",
            "StorageDirectory": str(home / "storage"),
            "IndexDirectory": str(home / "index"),
            "HttpServerEnabled": True,
            "HttpPort": http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": True,
            "DicomPort": dicom_port,
            "DicomAet": "ORTHANC",
            "DicomModalities": {"usqa": {"AET": "USQA", "Host": "127.0.0.1", "Port": usqa_port}},
            "Plugins": [],  # Debian's own configuration loads /usr/share/orthanc/plugins/
            "SaveJobs": False,
        }
        (home / "orthanc.json").write_text(json.dumps(config, indent=2))
        log = home / "orthanc.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [str(ORTHANC), str(home / "orthanc.json")],
                cwd=home,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = Orthanc(proc, http_port, log)
        started.append(server)
        until(server.up, 60, "Orthanc's REST API to answer", interval=0.2)
        return server

    yield start
    for server in started:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


def test_orthanc_forwards_a_cine_and_a_frame_each_scored_once(
    tmp_path: Path, any_url: str, random_weights: Path, orthanc: Any
) -> None:
    port = free_port()
    env = env_for(tmp_path, random_weights)
    env.update(
        USQA_DATABASE_URL=any_url,
        USQA_DICOM_ADDRESS="127.0.0.1",
        USQA_DICOM_ALLOWED_AES="ORTHANC",
    )
    with usqa_listening(tmp_path, env, port, "run", "--listen"):
        server = orthanc(port)
        until(
            server.echo,
            120,
            "`usqa run --listen` to answer Orthanc's C-ECHO",
            interval=0.5,
        )
        ids = []
        for path in (CINE, FRAME):
            answer = server.call("POST", "/instances", path.read_bytes())
            assert answer["Status"] == "Success", answer
            ids.append(answer["ID"])

        # as a job, as Orthanc Explorer's "Send to DICOM modality" runs it
        job = server.call(
            "POST", "/modalities/usqa/store", {"Resources": ids, "Asynchronous": True}
        )

        def job_done() -> dict[str, Any] | None:
            state = server.call("GET", f"/jobs/{job['ID']}")
            assert state["State"] not in ("Failure", "Paused"), (state, server.tail())
            return state if state["State"] == "Success" else None

        state = until(job_done, 180, "Orthanc's store job to succeed", interval=0.5)
        assert state["Content"]["FailedInstancesCount"] == 0, state
        assert state["Content"]["InstancesCount"] == 2, state

        until(lambda: settled(any_url, 2), 240, "both forwarded scans to be scored", interval=0.5)
        rows = scans(any_url)
        assert {r.status for r in rows} == {"scored"}, [(r.status, r.reason) for r in rows]
        scores = query_rows(any_url, "SELECT scan_id FROM scan_scores ORDER BY scan_id")
        assert [r["scan_id"] for r in scores] == [r.id for r in rows]  # each scored once

        # the same instances stored again (a routing rule fired twice, an operator's resend)
        again = server.call(
            "POST", "/modalities/usqa/store", {"Resources": ids, "Synchronous": True}
        )
        assert again["FailedInstancesCount"] == 0 and again["InstancesCount"] == 2, again
        assert [(r.id, r.sha256) for r in scans(any_url)] == [(r.id, r.sha256) for r in rows]
        assert len(query_rows(any_url, "SELECT scan_id FROM scan_scores")) == 2
    assert len(query_rows(any_url, "SELECT scan_id FROM scan_scores")) == 2

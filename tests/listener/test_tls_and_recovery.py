"""DICOM over TLS (a silent client does not hold up others: the handshake runs in each
connection's own thread), and what a crash leaves in the incoming folder."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom import AE

import db
from db import ledger
from tests.helpers.ledger import scans
from tests.listener.conftest import Running
from tests.listener.test_receive import example
from worker.listener.storage import final_name, sha256_file

pytestmark = pytest.mark.timeout(120)


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_silent_client_does_not_hold_up_a_tls_association(
    start_listener: Callable[..., Running], tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    running = start_listener(dicom_tls_cert=cert, dicom_tls_key=key)
    silent = socket.create_connection(("127.0.0.1", running.port))  # never says a word
    try:
        client = ssl.create_default_context(cafile=str(cert))
        client.check_hostname = False
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context("1.2.840.10008.1.1")
        started = time.monotonic()
        assoc = ae.associate(
            "127.0.0.1", running.port, ae_title="USQA", tls_args=(client, "localhost")
        )
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        assert time.monotonic() - started < 5.0
    finally:
        silent.close()


def test_a_file_recorded_before_a_crash_is_moved_in_at_start(
    start_listener: Callable[..., Running], tmp_path: Path, sqlite_url: str
) -> None:
    root = tmp_path / "drop"
    incoming = root / ".usqa-incoming"
    incoming.mkdir(parents=True)
    committed = incoming / "rx-committed.dcm"
    shutil.copyfile(example("examples_ybr_color.dcm"), committed)
    partial = incoming / "rx-partial.dcm"
    partial.write_bytes(committed.read_bytes()[:5000])  # the sender never had Success
    sha = sha256_file(str(committed))
    final = final_name(str(root), sha)
    st = committed.stat()
    with db.session_scope(sqlite_url) as session:  # committed, then the process died
        ledger.record_received_many(
            session, [ledger.ReceivedFile(final, st.st_size, st.st_mtime_ns, sha)], originals={}
        )
    running = start_listener()
    assert running.received() == [Path(final)]
    assert running.incoming() == []
    assert (
        dcmread(final).SOPInstanceUID == dcmread(example("examples_ybr_color.dcm")).SOPInstanceUID
    )
    assert len(scans(sqlite_url)) == 1

"""Real peers for the listener tests: pynetdicom's SCU in this process, pynetdicom's own
echoscu and storescu as subprocesses, and a listening `usqa run --listen` or `usqa listen`
as a subprocess on a free loopback port."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.association import Association

from tests.helpers.poll import until

__all__ = [
    "associate",
    "await_echo",
    "free_port",
    "pynetdicom_app",
    "send_files",
    "usqa_listening",
]


def associate(
    port: int,
    datasets: Sequence[Dataset] = (),
    *,
    calling: str = "SCANNER",
    called: str = "USQA",
    syntaxes: Sequence[str] | None = None,
) -> Association:
    """An association to the listener offering each data set's SOP class in its own
    transfer syntax (or ``syntaxes``), and Verification."""
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context("1.2.840.10008.1.1")
    for ds in datasets:
        offered = list(syntaxes or [ds.file_meta.TransferSyntaxUID])
        ae.add_requested_context(str(ds.SOPClassUID), offered)
    return ae.associate("127.0.0.1", port, ae_title=called)


def send_files(port: int, paths: Sequence[Path], **kwargs: object) -> list[int]:
    """C-STORE each file in one association; the status of each."""
    datasets = [dcmread(p) for p in paths]
    assoc = associate(port, datasets, **kwargs)  # type: ignore[arg-type]
    assert assoc.is_established, "association not accepted"
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pynetdicom_app(app: str, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pynetdicom", app, "127.0.0.1", str(port), *args]
    return subprocess.run(
        [*command, "-aec", "USQA", "-aet", "SCANNER"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def await_echo(port: int, timeout: float, what: str) -> None:
    """Wait until pynetdicom's echoscu gets an answer from ``port`` (``what`` names it)."""
    until(lambda: pynetdicom_app("echoscu", port).returncode == 0, timeout, what, interval=0.5)


@contextmanager
def usqa_listening(
    tmp_path: Path,
    env: dict[str, str],
    port: int,
    *verb: str,
    log: str = "run.log",
    stop_timeout: float = 60,
) -> Iterator[Path]:
    """``usqa VERB --watch tmp_path/drop --dicom-port PORT`` (``verb``: ``"run", "--listen"``
    or ``"listen"``) started in ``tmp_path`` with ``env``, its output in ``tmp_path/log``
    (the path is yielded). On leaving: SIGTERM, killed after ``stop_timeout`` seconds, and,
    where the block raised nothing, asserted to have exited 0."""
    path = tmp_path / log
    command = [sys.executable, "-m", "worker.cli", *verb, "--watch", str(tmp_path / "drop")]
    out = path.open("w")
    proc = subprocess.Popen(
        [*command, "--dicom-port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        yield path
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=stop_timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
            out.close()
    assert proc.returncode == 0, path.read_text()[-3000:]

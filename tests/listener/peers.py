"""Real peers for the listener tests: pynetdicom's SCU in this process."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.association import Association

__all__ = ["associate", "send_files"]


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

"""Delivering a structured report: a C-STORE to a PACS (pynetdicom SCU) or a file in the
results folder.

Negotiation comes first: the association proposes every SR SOP class a TID 1500 report
can be (:data:`worker.results.sr.SR_CLASSES`) and the report is then built as the first
of them the PACS accepted (Key Object Selection is proposed too, for the KOS of a poor
scan: :mod:`worker.results.kos`), so a PACS that takes only Comprehensive SR (or only Enhanced
SR) gets one it stores. Failures are sorted for the outbox: :class:`TransientError` (no
connection, association rejected or aborted, no SR class accepted, the PACS out of
resources 0xA7xx): try again later; :class:`InputError` (the PACS refused this object
with a failure status): never deliverable as it is.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydicom import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from worker.errors import InputError, TransientError
from worker.results.destinations import Peer
from worker.results.kos import KOS_CLASS
from worker.results.sr import SR_CLASSES

__all__ = ["Association", "open_association", "write_report_file"]

log = logging.getLogger(__name__)

TRANSFER_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
Build = Callable[[str], Dataset]  # SR SOP class -> the report


class Association:
    """An established association to a PACS that accepted an SR class."""

    def __init__(self, assoc: object, peer: Peer) -> None:
        self._assoc = assoc
        self.peer = peer
        # the transfer syntax of each accepted SOP class
        self.accepted = {
            str(c.abstract_syntax): str(c.transfer_syntax[0])
            for c in getattr(assoc, "accepted_contexts", [])
        }
        self.sop_class = next((str(c) for c in SR_CLASSES if str(c) in self.accepted), None)
        self.takes_kos = str(KOS_CLASS) in self.accepted

    def store(self, report: Dataset) -> None:
        """C-STORE ``report``; raises TransientError or InputError unless Success
        (or a warning status: the PACS stored it)."""
        assoc = self._assoc
        ts = self.accepted.get(str(report.SOPClassUID), ExplicitVRLittleEndian)
        report.file_meta.TransferSyntaxUID = UID(ts)
        try:
            status = assoc.send_c_store(report)  # type: ignore[attr-defined]
        except (OSError, RuntimeError, ValueError) as exc:
            raise TransientError(f"{self.peer}: C-STORE failed: {exc}") from exc
        if not assoc.is_established or status is None or "Status" not in status:  # type: ignore[attr-defined]
            raise TransientError(f"{self.peer}: the association ended before the C-STORE answer")
        code = int(status.Status)
        if code == 0 or code in (0x0001, 0x0107, 0x0116) or 0xB000 <= code <= 0xBFFF:
            return
        if 0xA700 <= code <= 0xA7FF:
            raise TransientError(f"{self.peer}: out of resources (status 0x{code:04X})")
        raise InputError(f"{self.peer}: refused the report (status 0x{code:04X})")


@contextmanager
def open_association(peer: Peer, calling_ae: str, timeout: float = 30.0) -> Iterator[Association]:
    """Associate with ``peer`` proposing every SR class; TransientError when that fails
    or the PACS accepts none of them. Released on exit."""
    from pynetdicom import AE

    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.connection_timeout = timeout
    for sop_class in (*SR_CLASSES, KOS_CLASS):
        ae.add_requested_context(sop_class, TRANSFER_SYNTAXES)
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
    if not assoc.is_established:
        why = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "failed"
        raise TransientError(f"{peer}: association {why} (is the PACS up and does it know us?)")
    try:
        found = Association(assoc, peer)
        if found.sop_class is None:
            raise TransientError(
                f"{peer}: accepts none of Comprehensive, Comprehensive 3D or Enhanced SR: "
                "configure the PACS to store one of them from this AE title"
            )
        yield found
    finally:
        if assoc.is_established:
            assoc.release()


def write_report_file(folder: Path, report: Dataset) -> Path:
    """Write ``report`` to ``folder/<SOP Instance UID>.dcm`` atomically (a temporary file
    in the same folder, fsynced, renamed over any earlier copy, the folder fsynced): a
    reader never sees half a file, and a resend replaces the same file."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{report.SOPInstanceUID}.dcm"
    fd, tmp = tempfile.mkstemp(prefix=".usqa-sr-", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            report.save_as(out, enforce_file_format=True)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return target

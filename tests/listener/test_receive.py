"""The Storage SCP with pynetdicom as the sender, in this process: what is written and
recorded, and what the sender is answered in each case."""

from __future__ import annotations

import errno
import hashlib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import dcmread, uid
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from sqlalchemy import text

import db
from tests.helpers.dicom import build, save, smooth_image
from tests.helpers.ledger import scans
from tests.listener.conftest import Running
from tests.listener.peers import associate, send_files
from worker.listener import storage
from worker.listener.contexts import LOSSLESS

pytestmark = pytest.mark.timeout(120)

EXAMPLES = ["examples_ybr_color.dcm", "examples_jpeg2k.dcm", "examples_rgb_color.dcm"]


def example(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, name
    return Path(path)


def rle_frame(tmp_path: Path) -> Path:
    ds = dcmread(example("examples_rgb_color.dcm"))
    ds.compress(uid.RLELossless)
    return save(ds, tmp_path / "rle.dcm")


def ct_image() -> Dataset:
    """A CT image: not ultrasound (the scoring path records it skipped)."""
    ds = build(smooth_image(64, 64, colour=False), "MONOCHROME2", modality="CT")
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = uid.CTImageStorage
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    return ds


def same_data(sent: Path, kept: Path) -> bool:
    a, b = dcmread(sent), dcmread(kept)
    return (
        a.SOPInstanceUID == b.SOPInstanceUID
        and a.PixelData == b.PixelData
        and a.file_meta.TransferSyntaxUID == b.file_meta.TransferSyntaxUID
    )


def test_echo_answers(start_listener: Callable[..., Running]) -> None:
    running = start_listener()
    assoc = associate(running.port)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()


def test_cine_and_frames_in_several_syntaxes_are_kept_as_sent(
    start_listener: Callable[..., Running], tmp_path: Path
) -> None:
    running = start_listener()
    files = [example(n) for n in EXAMPLES] + [rle_frame(tmp_path)]
    assert send_files(running.port, files) == [0] * len(files)
    kept = running.received()
    assert len(kept) == len(files)
    for path in kept:  # the name is the content hash, never a DICOM field
        assert path.name == hashlib.sha256(path.read_bytes()).hexdigest() + ".dcm"
    for sent in files:
        assert any(same_data(sent, k) for k in kept), sent.name
    rows = scans(running.url)
    assert sorted(r.path for r in rows) == sorted(str(p) for p in kept)
    assert {r.status for r in rows} == {"queued"}
    assert sorted(running.sent) == sorted(r.id for r in rows)
    assert running.incoming() == []


def test_lossless_is_chosen_when_the_sender_offers_it(
    start_listener: Callable[..., Running],
) -> None:
    running = start_listener()
    ds = dcmread(example("examples_rgb_color.dcm"))
    offered = [uid.JPEGBaseline8Bit, uid.ImplicitVRLittleEndian, uid.ExplicitVRLittleEndian]
    assoc = associate(running.port, [ds], syntaxes=offered)
    chosen = {
        cx.transfer_syntax[0]
        for cx in assoc.accepted_contexts
        if cx.abstract_syntax == ds.SOPClassUID
    }
    assoc.release()
    assert chosen == {uid.ExplicitVRLittleEndian}
    assert LOSSLESS.index(uid.ExplicitVRLittleEndian) == 0


def test_a_resend_after_a_dropped_association_adds_nothing(
    start_listener: Callable[..., Running],
) -> None:
    running = start_listener()
    ds = dcmread(example("examples_ybr_color.dcm"))
    first = associate(running.port, [ds])
    assert first.send_c_store(ds).Status == 0x0000
    first.abort()  # the sender timed out after we committed: it aborts and sends again
    again = associate(running.port, [ds])
    assert again.send_c_store(ds).Status == 0x0000
    again.release()
    assert len(scans(running.url)) == 1
    assert len(running.received()) == 1
    assert len(running.sent) == 1
    assert running.incoming() == []


def test_a_non_ultrasound_object_is_accepted_and_recorded(
    start_listener: Callable[..., Running], tmp_path: Path
) -> None:
    running = start_listener()
    ct = save(ct_image(), tmp_path / "ct.dcm")
    assert send_files(running.port, [ct]) == [0]
    (row,) = scans(running.url)
    assert row.status == "queued"  # the scoring path records it skipped (not scored)


def test_an_unknown_calling_ae_is_refused(start_listener: Callable[..., Running]) -> None:
    running = start_listener(dicom_allowed_aes=("SCANNER",))
    ds = dcmread(example("examples_rgb_color.dcm"))
    stranger = associate(running.port, [ds], calling="INTRUDER")
    assert stranger.is_rejected
    answer = stranger.acceptor.primitive
    assert answer is not None and answer.result == 0x01  # permanent: do not retry
    assert answer.diagnostic == 0x03  # calling AE title not recognised
    friend = associate(running.port, [ds], calling="SCANNER")
    assert friend.is_established
    friend.release()
    misdirected = associate(running.port, [ds], calling="SCANNER", called="PACS")
    assert misdirected.is_rejected


def test_an_address_outside_the_allow_list_is_closed(
    start_listener: Callable[..., Running],
) -> None:
    running = start_listener(dicom_allowed_addresses=("10.0.0.0/8",))
    assoc = associate(running.port)
    assert not assoc.is_established


def test_too_many_associations_are_rejected_as_transient(
    start_listener: Callable[..., Running],
) -> None:
    running = start_listener(dicom_max_associations=1)
    held = associate(running.port)
    assert held.is_established
    extra = associate(running.port)
    assert extra.is_rejected
    answer = extra.acceptor.primitive
    assert answer is not None and answer.result == 0x02  # rejected-transient: try later
    held.release()


def test_a_locked_database_answers_out_of_resources_then_the_retry_succeeds(
    start_listener: Callable[..., Running], sqlite_url: str
) -> None:
    running = start_listener()
    ds = dcmread(example("examples_ybr_color.dcm"))
    blocker = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), timeout=1)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        assoc = associate(running.port, [ds])
        assert assoc.send_c_store(ds).Status == 0xA700
    finally:
        blocker.rollback()
        blocker.close()
    assert assoc.send_c_store(ds).Status == 0x0000  # the sender's retry
    assoc.release()
    assert len(scans(running.url)) == 1
    assert len(running.received()) == 1
    assert running.incoming() == []


def test_an_unreachable_database_answers_out_of_resources(
    start_listener: Callable[..., Running], sqlite_url: str
) -> None:
    running = start_listener(url="postgresql+psycopg://usqa@127.0.0.1:9/none")
    ds = dcmread(example("examples_rgb_color.dcm"))
    assoc = associate(running.port, [ds])
    assert assoc.send_c_store(ds).Status == 0xA700
    assoc.release()
    assert running.received() == []
    assert running.incoming() == []


def test_a_locked_postgresql_table_answers_out_of_resources_then_the_retry_succeeds(
    start_listener: Callable[..., Running], postgres_ledger: Callable[[], str]
) -> None:
    url = postgres_ledger()
    running = start_listener(url=url)
    ds = dcmread(example("examples_rgb_color.dcm"))
    assoc = associate(running.port, [ds])
    engine = db.get_engine(url)
    with engine.connect() as blocker:  # a migration or a VACUUM FULL holds the table
        blocker.execute(text("LOCK TABLE scans IN ACCESS EXCLUSIVE MODE"))
        started = time.monotonic()
        assert assoc.send_c_store(ds).Status == 0xA700
        assert time.monotonic() - started < 8.0  # within a modality's usual 10 s timeout
        blocker.rollback()
    assert assoc.send_c_store(ds).Status == 0x0000  # the sender's retry
    assoc.release()
    assert len(scans(url)) == 1
    assert len(running.received()) == 1
    assert running.incoming() == []


def test_a_full_disk_answers_out_of_resources_and_records_nothing(
    start_listener: Callable[..., Running], monkeypatch: pytest.MonkeyPatch
) -> None:
    running = start_listener()

    def full(path: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(storage, "_fsync_file", full)
    ds = dcmread(example("examples_rgb_color.dcm"))
    assoc = associate(running.port, [ds])
    answer = assoc.send_c_store(ds)
    assoc.release()
    assert answer.Status == 0xA700 and "disk full" in answer.ErrorComment
    assert scans(running.url) == [] and running.received() == []


def test_a_data_set_over_the_size_limit_is_refused(
    start_listener: Callable[..., Running],
) -> None:
    running = start_listener(max_file_bytes=1000)
    ds = dcmread(example("examples_rgb_color.dcm"))
    assoc = associate(running.port, [ds])
    answer = assoc.send_c_store(ds)
    assoc.release()
    assert answer.Status == 0xC000  # never accepted: the sender does not retry
    assert scans(running.url) == [] and running.received() == []

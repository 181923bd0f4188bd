"""The decoder child runs scrubbed and capped: no secret in its environment, an address
space limit (USQA_DECODER_MEMORY), and a parent that checks what it announces. Bombs fail
with a clear reason and the next file is scored. Real child processes, real files."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import UID, generate_uid

import db
from db.models import Scan
from tests.helpers.files import make_settings, write_png
from tests.helpers.ledger import receive
from worker.decoding import Decoder, protocol
from worker.decoding import client as decoder_module
from worker.errors import CorruptFileError
from worker.scoring import ScoringContext, process_scans

SECRETS = {
    "USQA_DATABASE_URL": "postgresql+psycopg://usqa:hunter2@db/usqa",
    "USQA_BROKER_URL": "redis://:hunter2@redis:6379/0",
    "USQA_PSEUDONYM_SALT": "0123456789abcdef0123456789abcdef",
    "PGPASSWORD": "hunter2",
    "AWS_SECRET_ACCESS_KEY": "hunter2",
    "REDIS_PASSWORD": "hunter2",
}


def _address_limit(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max address space"):
            return line.split()[3]
    return ""


def test_the_child_has_no_secret_and_a_memory_limit(
    tmp_path: Path, random_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LANG", "C.UTF-8")
    settings = make_settings(f"sqlite:///{tmp_path / 'x.db'}", random_weights, decoder_memory=1024)
    decoder = Decoder.from_settings(settings)
    try:
        header = decoder.open(str(write_png(tmp_path / "a.png", 1)))  # the child is up
        assert header.kind == "image"
        assert decoder.pid is not None
        environ = Path(f"/proc/{decoder.pid}/environ").read_bytes().split(b"\0")
        names = {item.split(b"=", 1)[0].decode() for item in environ if item}
        assert not names & set(SECRETS), names & set(SECRETS)
        assert not any(b"hunter2" in item for item in environ)
        assert not {n for n in names if n.startswith("USQA_")} - {"USQA_TEST_FAULTS"}, names
        assert "PATH" in names and "LANG" in names
        assert _address_limit(decoder.pid) == str(1024 << 20)
    finally:
        decoder.close()


def _image_bomb(path: Path, side: int) -> Path:
    """A PNG of ``side`` x ``side`` RGB pixels of one colour: a few hundred KiB on disk,
    side**2 x 3 bytes decoded."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (40, 40, 40)).save(buffer, format="PNG", compress_level=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path


def _deflate_bomb(path: Path, inflated: int) -> Path:
    """A deflated DICOM file whose dataset inflates to ``inflated`` bytes (zeros)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.6.1")
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.1.99")
    ds = Dataset()
    ds.Modality = "US"
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 64, 64, 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    with path.open("wb") as f:
        f.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(f, meta, enforce_standard=True)  # type: ignore[arg-type]
        f.write(squeeze.compress(body.getvalue()))
        f.write(squeeze.compress(struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OB", 0, inflated)))
        zeros = bytes(16 << 20)
        for _ in range(inflated // len(zeros)):
            f.write(squeeze.compress(zeros))
        f.write(squeeze.flush())
    return path


def test_bombs_fail_with_a_clear_reason_and_the_next_file_is_scored(
    sqlite_url: str, tmp_path: Path, pipeline_for: Callable[..., ScoringContext]
) -> None:
    drop = tmp_path / "drop"
    image_bomb = _image_bomb(drop / "bomb.png", 12_000)  # 432 MB of pixels when decoded
    deflate_bomb = _deflate_bomb(drop / "bomb.dcm", 768 << 20)
    assert image_bomb.stat().st_size < 2 << 20 and deflate_bomb.stat().st_size < 4 << 20
    plain = write_png(drop / "plain.png", 2)
    ids = [receive(sqlite_url, p) for p in (image_bomb, deflate_bomb, plain)]
    pipeline = pipeline_for(sqlite_url, decoder_memory=512, max_pixels=200_000_000)
    result = process_scans(ids, pipeline)
    assert result.statuses[ids[2]] == "scored"
    with db.session_scope(sqlite_url, readonly=True) as s:
        rows = {i: s.get(Scan, i) for i in ids}
    for i, name in zip(ids[:2], ("bomb.png", "bomb.dcm"), strict=True):
        row = rows[i]
        assert row is not None and row.status == "failed", (name, row and row.reason)
        assert row.reason is not None
        assert name in row.reason and "USQA_DECODER_MEMORY" in row.reason, row.reason


@pytest.mark.parametrize(
    ("shape", "payload"),
    [
        ([64, 64], b"\0" * 10),  # fewer bytes than announced
        ([8, 8, 9], b"\0" * 576),  # nine samples per pixel
        ([-8, -8], b"\0" * 64),  # a negative shape
        (["x"], b"\0"),  # not a shape
    ],
    ids=["short", "channels", "negative", "garbage"],
)
def test_the_parent_refuses_a_frame_whose_announced_size_is_wrong(
    shape: list[Any], payload: bytes
) -> None:
    decoder = Decoder({"max_pixels": 1000}, timeout=5)
    decoder._path = "x.dcm"
    with pytest.raises(CorruptFileError, match="announced a frame"):
        decoder._frame({"type": "frame", "index": 0, "shape": shape}, payload)


def test_the_parent_refuses_a_reply_larger_than_a_frame_may_be(tmp_path: Path) -> None:
    """A child that announces more bytes than USQA_MAX_PIXELS allows is killed unread."""
    decoder = Decoder({"max_pixels": 1000}, timeout=5)
    assert decoder.max_frame_bytes == 4000
    read: list[int] = []

    def fake_read(proc: Any, n: int) -> bytes:
        read.append(n)
        return protocol.HEAD.pack(10, 5000)

    decoder._proc = object()  # type: ignore[assignment]
    decoder._read_exact = fake_read  # type: ignore[method-assign]
    decoder._kill = lambda: None  # type: ignore[method-assign]
    with pytest.raises(CorruptFileError, match="refused unread"):
        decoder._recv()
    assert read == [protocol.HEAD.size]


def test_the_parent_refuses_a_header_beyond_the_limits() -> None:
    from dicom_io import ScanHeader

    decoder = Decoder({"max_pixels": 1000, "max_frames": 10}, timeout=5)
    decoder._path = "x.dcm"
    for rows, columns, frames in ((100, 100, 1), (10, 10, 11), (-1, 5, 1)):
        header = ScanHeader("dicom", rows, columns, frames, 1, [0], None)
        with pytest.raises(CorruptFileError, match="announced"):
            decoder._check_header(header)
    decoder._check_header(ScanHeader("dicom", 10, 10, 10, 1, [0], None))


def test_the_salt_stays_in_the_parent_and_the_pseudonyms_are_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child gets no salt, in its environment or its messages; it hands the parent the
    identifiers' texts and the parent's pseudonyms equal those of a read with the salt."""
    import json

    import pydicom
    from pydicom.data import get_testdata_file

    from dicom_io import ReadOptions, read
    from dicom_io.metadata import pseudonymise
    from worker.settings import load_settings

    salt = SECRETS["USQA_PSEUDONYM_SALT"]
    monkeypatch.setenv("USQA_PSEUDONYM_SALT", salt)
    sent: list[bytes] = []
    real_send = decoder_module.send

    def recording_send(stream: Any, message: dict[str, Any], payload: bytes = b"") -> None:
        sent.append(json.dumps(message, default=str).encode())
        real_send(stream, message, payload)

    monkeypatch.setattr(decoder_module, "send", recording_send)
    dcm = tmp_path / "cine.dcm"
    ds = pydicom.dcmread(str(get_testdata_file("examples_ybr_color.dcm")))
    ds.PatientID, ds.OperatorsName = "MRN 0042", "Doe^Jane"
    ds.save_as(dcm)
    png = write_png(tmp_path / "b.png", 2)
    png.with_suffix(".png.json").write_text('{"patient_id": 77, "operator": "Roe^Rick"}')
    decoder = Decoder.from_settings(load_settings({"pseudonym_salt": salt}, environ={}))
    try:
        got = {p: decoder.open(str(p)).metadata for p in (dcm, png)}
        environ = Path(f"/proc/{decoder.pid}/environ").read_bytes()
    finally:
        decoder.close()
    assert sent and sent[0].startswith(b'{"op": "init"')  # the start-up message
    assert not any(salt.encode() in message for message in sent)
    assert salt.encode() not in environ
    for path, meta in got.items():
        direct = read(str(path), ReadOptions(pseudonym_salt=salt)).metadata
        assert meta["patient_id_hash"] == direct["patient_id_hash"] is not None
        assert meta["operator"] == direct["operator"] is not None
        assert "identifiers" not in meta
    # whatever a subverted child puts in the pseudonym fields, the parent sets them itself
    assert pseudonymise({"patient_id_hash": "MRN 0042", "operator": "Doe"}, salt) == {
        "patient_id_hash": None,
        "operator": None,
    }

"""`usqa report --html --thumbnails` shows a scan's image only while its file is still the
content that was scored (size and sha256 as recorded, unchanged while read): never a file
put at the same path since (a new arrival with the same name, an edited copy with its
mtime put back), never a pipe that would block the report."""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from sqlalchemy import text

import db
from db.qa.queries import scan_files
from dicom_io import ReadOptions
from tests.helpers.ledger import Row, seed
from worker.cli import main
from worker.report.thumbnails import GONE, REPLACED, thumbnails

DAY = date(2025, 3, 2)


def example(name: str) -> Path:
    found = get_testdata_file(name)
    assert found is not None, name
    return Path(str(found))


def tiny_dicom(path: Path, seed_value: int) -> Path:
    """A small grey ultrasound DICOM file; a different ``seed_value``, different pixels."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "US"
    pixels = np.random.default_rng(seed_value).integers(0, 256, (48, 64), dtype=np.uint8)
    ds.set_pixel_data(pixels, "MONOCHROME2", 8)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    folder = tmp_path / "drop"
    (folder / "done").mkdir(parents=True)
    return folder


def scored(url: str, paths: list[Path]) -> list[int]:
    """Seed one scored scan per file (scores 1, 2, ...: they are the lowest-scoring)."""
    rows = [Row(DAY, float(i + 1), station="US-1", path=str(p)) for i, p in enumerate(paths)]
    return seed(url, rows, start=1)


def test_only_the_scored_content_gets_a_thumbnail(
    drop: Path, tmp_path: Path, sqlite_url: str
) -> None:
    url = sqlite_url
    names = ["same", "replaced", "edited", "deleted", "fifo", "moved", "renamed-away"]
    paths = [drop / f"{n}.dcm" for n in names]
    for k, p in enumerate(paths):
        tiny_dicom(p, k)
    ids = dict(zip(names, scored(url, paths), strict=True))

    # After scoring: a new file of the same name arrives (another scan's content) ...
    tiny_dicom(paths[1], 100)
    # ... a copy is edited in place, same size, and its mtime put back ...
    info = paths[2].stat()
    with paths[2].open("r+b") as fh:
        fh.seek(info.st_size - 100)
        byte = fh.read(1)
        fh.seek(info.st_size - 100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    os.utime(paths[2], ns=(info.st_atime_ns, info.st_mtime_ns))
    assert paths[2].stat().st_size == info.st_size
    # ... one is deleted, one replaced by a pipe that nobody writes to ...
    paths[3].unlink()
    paths[4].unlink()
    os.mkfifo(paths[4])
    # ... one was moved to done/ (USQA_AFTER_SCORING=move) and a different file now has
    # its old name; and the last was moved, deleted from done/, and its name reused.
    done = drop / "done" / "moved.dcm"
    paths[5].rename(done)
    tiny_dicom(paths[5], 105)
    gone = drop / "done" / "renamed-away.dcm"
    tiny_dicom(paths[6], 106)
    with db.session_scope(url) as s:
        for scan_id, moved in ((ids["moved"], done), (ids["renamed-away"], gone)):
            s.execute(
                text("UPDATE scans SET disposition = 'moved', disposed_path = :p WHERE id = :i"),
                {"p": str(moved), "i": scan_id},
            )

    with db.session_scope(url, readonly=True) as s:
        files = scan_files(s, ids.values())
    assert files[ids["moved"]].paths == (str(done), str(paths[5]))
    got = thumbnails(files, ReadOptions())
    shown = {name for name, i in ids.items() if got[i].uri is not None}
    assert shown == {"same", "moved"}
    assert got[ids["same"]].uri.startswith("data:image/png;base64,")  # type: ignore[union-attr]
    notes = {name: got[i].note for name, i in ids.items() if got[i].uri is None}
    assert notes == {
        "replaced": REPLACED,
        "edited": REPLACED,
        "deleted": GONE,
        "fifo": REPLACED,
        "renamed-away": REPLACED,
    }

    page = tmp_path / "report.html"
    args = ["report", "--database-url", url, "--until", str(DAY), "--html", str(page)]
    assert main([*args, "--thumbnails", "--worst", "10"]) == 0
    html = page.read_text(encoding="utf-8")
    assert html.count('<img class="thumb"') == 2
    assert html.count(REPLACED) == 4 and html.count(GONE) == 1


def test_a_thumbnail_stays_when_nothing_changed(drop: Path, sqlite_url: str) -> None:
    url = sqlite_url
    path = drop / "cine.dcm"
    shutil.copy(example("examples_ybr_color.dcm"), path)
    [scan_id] = scored(url, [path])
    with db.session_scope(url, readonly=True) as s:
        files = scan_files(s, [scan_id])
    assert files[scan_id].size_bytes == path.stat().st_size
    first = thumbnails(files, ReadOptions())[scan_id]
    again = thumbnails(files, ReadOptions())[scan_id]
    assert first.uri is not None and first.uri == again.uri and first.note == ""

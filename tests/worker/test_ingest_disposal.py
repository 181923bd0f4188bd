"""After scoring, `move` and `delete` act only on the file that was scored (same device,
inode, size and mtime), and never through a symbolic link: one planted as `done/` or
`failed/`, or swapped in for the file's own folder after it was received."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from tests.helpers.files import Drop, write_png
from tests.helpers.ledger import finish_all, scans
from tests.helpers.poll import until


def disposed(drop: Drop) -> None:
    until(
        drop.ticking(lambda: all(r.disposed_at is not None for r in scans(drop.url))),
        10,
        "every scored file disposed of",
    )


def said(caplog: pytest.LogCaptureFixture, words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if words in r.getMessage()]


@pytest.mark.parametrize("policy", ["move", "delete"])
def test_a_file_replaced_after_scoring_is_left_alone(
    sqlite_url: str,
    tmp_path: Path,
    random_weights: Path,
    policy: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    drop = Drop(sqlite_url, tmp_path / "drop", random_weights, after_scoring=policy)
    path = write_png(drop.root / "a.png", 1)
    [row] = drop.settle(1)
    finish_all(sqlite_url)
    # the same bytes, the same size and mtime, but another file (a copy renamed over it)
    copy = tmp_path / "copy.png"
    shutil.copy2(path, copy)
    info = path.stat()
    os.utime(copy, ns=(info.st_atime_ns, info.st_mtime_ns))
    copy.rename(path)
    replaced = path.stat().st_ino
    assert replaced != info.st_ino
    with caplog.at_level(logging.WARNING, logger="worker.ingest"):
        disposed(drop)
    [after] = [r for r in scans(sqlite_url) if r.id == row.id]
    assert after.disposition == "replaced"
    assert path.stat().st_ino == replaced  # neither moved nor deleted
    assert said(caplog, "not the one that was scored")
    assert not (drop.root / "done").exists()


@pytest.mark.parametrize("planted", ["done", "failed"])
def test_move_never_follows_a_link_planted_as_done_or_failed(
    sqlite_url: str,
    tmp_path: Path,
    random_weights: Path,
    planted: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    drop = Drop(sqlite_url, tmp_path / "drop", random_weights, after_scoring="move")
    path = write_png(drop.root / "x" / "a.png", 1)
    drop.settle(1)
    (drop.root / planted).symlink_to(outside)
    finish_all(sqlite_url, "scored" if planted == "done" else "failed")
    with caplog.at_level(logging.WARNING, logger="worker.ingest"):
        disposed(drop)
    [row] = scans(sqlite_url)
    assert row.disposition == "refused" and row.disposed_path is None
    assert path.is_file() and list(outside.iterdir()) == []
    assert said(caplog, "symbolic link")


@pytest.mark.parametrize("policy", ["move", "delete"])
def test_a_folder_swapped_for_a_link_after_receipt_is_not_followed(
    sqlite_url: str, tmp_path: Path, random_weights: Path, policy: str
) -> None:
    """The scored file itself moved out of the folder with its sub-folder, and a link put
    in the sub-folder's place: the path now reaches the very same file (same inode),
    outside; it must stay there, untouched."""
    outside = tmp_path / "outside"
    outside.mkdir()
    drop = Drop(sqlite_url, tmp_path / "drop", random_weights, after_scoring=policy)
    write_png(drop.root / "x" / "a.png", 1)
    drop.settle(1)
    (drop.root / "x").rename(outside / "x")
    (drop.root / "x").symlink_to(outside / "x")
    finish_all(sqlite_url)
    disposed(drop)
    [row] = scans(sqlite_url)
    assert row.disposition == "refused"
    assert (outside / "x" / "a.png").is_file()
    assert not (drop.root / "done").exists()

"""A hostile drop folder, watched by inotify and by polling, with USQA_AFTER_SCORING=delete:
every hazard of issue 15 at once beside ordinary files, through the real `usqa run --once`
loop (ingester, in-process runner, decoder child, PostgreSQL ledger).

The ingester must stay up, every regular file of its own inside the folder must end in
exactly one terminal row with a reason, everything else must be refused (logged once, left
in place), nothing outside the folder may change, and the run must end."""

from __future__ import annotations

import hashlib
import logging
import os
import random
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from db import paths
from db.models import TERMINAL
from tests.helpers.files import Drop, copy_dicom, env_for, make_settings, usqa, write_png
from tests.helpers.ledger import scans
from tests.helpers.poll import until
from worker.ingest.admission import Folder
from worker.logs import TextFormatter
from worker.service import run_embedded

pytestmark = pytest.mark.timeout(400)  # a walk that loops for ever fails here, not in CI's limit

LIMIT = 4 * 1024 * 1024  # USQA_MAX_FILE_BYTES for the test


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hostile_folder(drop: Path, outside: Path) -> tuple[dict[bytes, str], dict[bytes, str]]:
    """Fill ``drop``; return (own files: name -> words of the final row, refused: name ->
    words of the refusal logged). Names are bytes, as the file system has them."""
    drop.mkdir()
    outside.mkdir()
    own: dict[bytes, str] = {}
    refused: dict[bytes, str] = {}
    root = os.fsencode(drop)

    def at(name: bytes) -> Path:
        return Path(os.fsdecode(os.path.join(root, name)))

    write_png(at(b"good.png"), 1)
    own[b"good.png"] = ""
    copy_dicom("examples_palette.dcm", at(b"sub/good.dcm"))
    own[b"sub/good.dcm"] = ""
    write_png(at(b"caf\xe9.png"), 2)  # Latin-1 name: not valid UTF-8
    own[b"caf\xe9.png"] = ""
    write_png(at(b"new\nline\x1b[31mred\x07.png"), 3)  # a newline, an escape sequence, a bell
    own[b"new\nline\x1b[31mred\x07.png"] = ""
    with at(b"sparse.dcm").open("wb") as fh:  # truncate -s 1T: no disk used
        os.truncate(fh.fileno(), 1 << 40)
    own[b"sparse.dcm"] = "USQA_MAX_FILE_BYTES"
    locked = write_png(at(b"locked.png"), 4)
    locked.chmod(0)
    # Tests run as root, which reads a mode-000 file anyway (CAP_DAC_OVERRIDE): then it is
    # scored like the others. Without that capability it is refused: see
    # test_an_unreadable_file_is_refused_once_and_the_others_scored.
    if os.access(locked, os.R_OK):
        own[b"locked.png"] = ""
    else:
        refused[b"locked.png"] = "cannot be opened"
    write_png(at(b"vanishing.png"), 5)  # deleted between the listing and the stat (below)

    (drop / "loop1").symlink_to(".")
    (drop / "loop2").symlink_to(".")
    refused[b"loop1"] = refused[b"loop2"] = "symbolic link to a folder"
    write_png(outside / "away" / "secret.png", 6)
    (drop / "linked").symlink_to(outside / "away")  # a folder behind a link, outside
    refused[b"linked"] = "outside the drop folder"
    (drop / "link.png").symlink_to(write_png(outside / "target.png", 7))
    refused[b"link.png"] = "outside the drop folder"
    os.link(write_png(outside / "hard.png", 8), drop / "hard.png")
    refused[b"hard.png"] = "hard links"
    os.mkfifo(drop / "pipe.dcm")
    refused[b"pipe.dcm"] = "not a regular file"
    # a legal path (3 kB, under PATH_MAX) too long for the ledger's index once escaped
    rng = random.Random(0)  # incompressible, so PostgreSQL cannot squeeze it into its index
    deep = b"/".join(bytes(rng.randrange(0x80, 0x100) for _ in range(200)) for _ in range(15))
    os.makedirs(os.path.join(root, deep))
    write_png(at(os.path.join(deep, b"a.png")), 9)
    with at(os.path.join(deep, b"big.dcm")).open("wb") as fh:
        os.truncate(fh.fileno(), 1 << 40)
    refused[os.path.join(deep, b"a.png")] = refused[os.path.join(deep, b"big.dcm")] = "shorten"
    return own, refused


def vanish_on_first_look(monkeypatch: pytest.MonkeyPatch, victim: Path) -> list[bool]:
    """Delete ``victim`` the first time admission looks at it: the walk (or an event) has
    listed it, its ``lstat`` then finds nothing."""
    admit = Folder.admit
    gone: list[bool] = []

    def admit_after_vanishing(self: Folder, path: str, **kw: Any) -> Any:
        if path == str(victim) and not gone:
            victim.unlink()
            gone.append(True)
        return admit(self, path, **kw)

    monkeypatch.setattr(Folder, "admit", admit_after_vanishing)
    return gone


@pytest.mark.parametrize("polling", [False, True], ids=["inotify", "polling"])
def test_a_hostile_drop_folder_with_delete_after_scoring(
    tmp_path: Path,
    postgres_database: Callable[[], str],
    random_weights: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    polling: bool,
) -> None:
    url = postgres_database()
    drop, outside = tmp_path / "drop", tmp_path / "outside"
    own, refused = hostile_folder(drop, outside)
    before = {p: _digest(p) for p in outside.rglob("*") if p.is_file()}
    gone = vanish_on_first_look(monkeypatch, drop / "vanishing.png")
    settings = make_settings(
        url,
        random_weights,
        polling=polling,
        after_scoring="delete",
        max_file_bytes=LIMIT,
        stable_seconds=0.3,
        rescan_seconds=1.0,
    )
    caplog.set_level(logging.INFO)

    assert run_embedded(drop, settings, once=True) == 1  # returns: sparse.dcm failed

    rows = scans(url)
    root = os.fsencode(drop)
    names = [os.path.relpath(os.fsencode(paths.fs_path(r.path, r.path_bytes)), root) for r in rows]
    assert Counter(names) == Counter(list(own)), "exactly one row per file of its own"
    by_name = dict(zip(names, rows, strict=True))
    for name, words in own.items():
        row = by_name[name]
        assert row.status in TERMINAL, (name, row.status)
        assert row.status == "scored" or row.reason, (name, row.status)
        assert words in (row.reason or ""), (name, row.reason)
        assert row.path.isprintable() and row.path == paths.ledger_path(os.fsdecode(
            os.path.join(root, name)))[0]  # fmt: skip
        assert row.disposition == "deleted", (name, row.disposition)
        assert not os.path.lexists(os.path.join(root, name)), name
    assert by_name[b"caf\xe9.png"].path == str(drop / "caf\\xe9.png")
    assert by_name[b"caf\xe9.png"].path_bytes == os.path.join(root, b"caf\xe9.png")
    assert by_name[b"caf\xe9.png"].status == "scored"
    assert by_name[b"sparse.dcm"].status == "failed"

    # the refused are left where they are, each refusal logged once with its reason
    messages = [r.getMessage() for r in caplog.records]
    for name, words in refused.items():
        assert os.path.lexists(os.path.join(root, name)), name
        shown = paths.printable(os.fsdecode(os.path.join(root, name)))
        said = [m for m in messages if m.startswith(f"refused {shown}: ")]
        assert len(said) == 1 and words in said[0], (name, said)
    assert gone and not (drop / "vanishing.png").exists()
    assert not any("vanishing" in m for m in messages if "refused" in m)

    # nothing outside changed: same files, same content, the hard link still has its twin
    assert {p: _digest(p) for p in outside.rglob("*") if p.is_file()} == before
    assert (outside / "hard.png").stat().st_nlink == 2

    # the ingester never reached its last-resort boundary, and every log line is one
    # printable line
    assert not [r for r in caplog.records if "unexpected error" in r.getMessage()]
    formatter = TextFormatter("%(levelname)s %(name)s: %(message)s")
    for record in caplog.records:
        record.message = record.getMessage()
        line = formatter.formatMessage(record)
        assert line.isprintable(), line


def test_a_row_the_database_cannot_index_is_refused_not_retried_for_ever(
    tmp_path: Path,
    postgres_ledger: Callable[[], str],
    random_weights: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the length check in admission, PostgreSQL refuses the row (index row size,
    SQLSTATE 54): that is the file's fault, not an outage. The file is refused with the
    database's reason and the ingester records the others, instead of pausing for ever."""
    url = postgres_ledger()
    monkeypatch.setattr(paths, "MAX_TEXT_BYTES", 1 << 20)
    drop = Drop(url, tmp_path / "drop", random_weights)
    rng = random.Random(1)
    deep = b"/".join(bytes(rng.randrange(0x80, 0x100) for _ in range(200)) for _ in range(15))
    folder = os.path.join(os.fsencode(drop.root), deep)
    os.makedirs(folder)
    long = Path(os.fsdecode(os.path.join(folder, b"a.png")))
    write_png(long, 1)
    write_png(drop.root / "b.png", 2)
    [row] = drop.settle(1)
    assert row.path == str(drop.root / "b.png")
    reason, _ = drop.ingester.refused[str(long)]
    assert "could not be recorded" in reason and "index row size" in reason
    assert not drop.ingester._db_failing


def test_a_folder_swapped_for_a_link_before_its_file_is_taken_is_refused(
    sqlite_url: str, tmp_path: Path, random_weights: Path
) -> None:
    """The walk lists x/a.png; before it has been still for the window, x is replaced by a
    link to a folder outside holding another a.png. The path now leads outside: the file
    there is refused, never read nor recorded."""
    drop = Drop(sqlite_url, tmp_path / "drop", random_weights, stable_seconds=2.0)
    path = write_png(drop.root / "x" / "a.png", 1)
    drop.ingester.tick()
    assert str(path) in drop.ingester.pending  # listed, not taken yet
    write_png(tmp_path / "outside" / "a.png", 2)
    (drop.root / "x").rename(tmp_path / "moved-away")
    (drop.root / "x").symlink_to(tmp_path / "outside")
    until(drop.ticking(lambda: str(path) in drop.ingester.refused), 20, "the file refused")
    reason, _ = drop.ingester.refused[str(path)]
    assert "symbolic link to a folder" in reason
    assert drop.settle(0) == []


# root without the capabilities that let it read any file: a mode-000 file is then unreadable
NO_DAC = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search")


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_an_unreadable_file_is_refused_once_and_the_others_scored(
    tmp_path: Path, random_weights: Path
) -> None:
    drop = tmp_path / "drop"
    write_png(drop / "good.png", 1)
    locked = write_png(drop / "locked.png", 2)
    locked.chmod(0)
    env = {**env_for(tmp_path, random_weights), "USQA_DATABASE_URL": f"sqlite:///{tmp_path}/l.db"}
    if os.geteuid() != 0:
        wrapper: tuple[str, ...] = ()
    elif usqa(["--help"], tmp_path, env, wrapper=NO_DAC).returncode == 0:
        wrapper = NO_DAC
    else:
        pytest.skip("root, and setpriv cannot drop CAP_DAC_OVERRIDE here")
    done = usqa(["run", "--once", "--watch", str(drop)], tmp_path, env, wrapper=wrapper)
    assert done.returncode == 0, done.stderr
    refusals = [line for line in done.stderr.splitlines() if "refused" in line]
    assert len(refusals) == 1 and f"{locked}: it cannot be opened" in refusals[0], refusals
    [row] = scans(env["USQA_DATABASE_URL"])
    assert row.path == str(drop / "good.png") and row.status == "scored"
    assert locked.exists()

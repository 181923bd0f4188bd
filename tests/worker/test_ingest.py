"""The ingester on a real folder and a real SQLite ledger: complete files only, temporary
names, symlinks, rescans, duplicates, the after-scoring policies, and the live observer."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

import db
from db.models import Scan
from tests.helpers.files import Drop, make_settings, write_png
from tests.helpers.ledger import finish_all, scans
from tests.helpers.poll import until
from worker.ingest import Batcher, Ingester, is_ignored_name


@pytest.fixture
def drop(sqlite_url: str, tmp_path: Path, random_weights: Path) -> Drop:
    return Drop(sqlite_url, tmp_path / "drop", random_weights)


@pytest.mark.parametrize(
    ("name", "ignored"),
    [
        ("a.dcm", False),
        ("sub/IM0001", False),
        ("a.png.part", True),
        ("x.tmp", True),
        ("x.PARTIAL", True),
        (".hidden.dcm", True),
        (".sync/a.dcm", True),
        ("a.png.json", True),
        ("backup~", True),
        ("done/a.dcm", True),
        ("failed/x/a.dcm", True),
        ("sub/done/a.dcm", False),
    ],
)
def test_ignored_names(name: str, ignored: bool) -> None:
    assert is_ignored_name(name) is ignored


def test_batcher_sends_full_batches_then_lingering_ones() -> None:
    clock = [0.0]
    sent: list[list[int]] = []
    batcher = Batcher(sent.append, size=3, linger=0.5, clock=lambda: clock[0])
    batcher.add([1, 2, 3, 4])
    assert sent == [[1, 2, 3]]
    batcher.flush()
    assert sent == [[1, 2, 3]]
    clock[0] = 0.6
    batcher.flush()
    assert sent == [[1, 2, 3], [4]] and batcher.empty


def test_batcher_keeps_what_the_broker_refused() -> None:
    clock = [0.0]
    sent: list[list[int]] = []
    down = [True]

    def send(ids: list[int]) -> None:
        if down[0]:
            raise ConnectionError("broker down")
        sent.append(ids)

    batcher = Batcher(send, size=2, linger=0.0, clock=lambda: clock[0])
    batcher.add([1, 2, 3])
    batcher.flush()
    assert sent == [] and not batcher.empty
    down[0] = False
    clock[0] = 5.0
    batcher.flush()
    assert sorted(i for b in sent for i in b) == [1, 2, 3] and batcher.empty


def test_files_already_there_are_recorded_once_and_queued(drop: Drop) -> None:
    for i in range(5):
        write_png(drop.root / f"s{i % 2}" / f"{i}.png", i)
    got = drop.settle(5)
    assert [r.status for r in got] == ["queued"] * 5
    assert sorted(drop.sent_ids) == [r.id for r in got]
    assert all(len(b) <= 4 for b in drop.sent)  # USQA_FILES_PER_TASK in make_settings
    drop.ingester._next_rescan = 0  # a full rescan finds nothing new
    drop.ingester.known.clear()  # ... even without the in-memory cache
    assert len(drop.settle(5)) == 5


def test_temporary_names_wait_for_their_rename(drop: Drop) -> None:
    drop.root.mkdir(exist_ok=True)
    (drop.root / "scan.png.part").write_bytes(write_png(drop.root.parent / "s.png", 1).read_bytes())
    (drop.root / ".scan2.png").write_bytes(b"hidden")
    drop.settle(0)
    assert scans(drop.url) == []
    (drop.root / "scan.png.part").rename(drop.root / "scan.png")
    [row] = drop.settle(1)
    assert row.path == str(drop.root / "scan.png")


def test_a_file_written_slowly_is_taken_only_when_complete(drop: Drop) -> None:
    source = write_png(drop.root.parent / "big.png", 7, size=(300, 300)).read_bytes()
    target = drop.root / "slow.png"
    drop.root.mkdir(exist_ok=True)
    done = threading.Event()

    def writer() -> None:
        with target.open("wb") as fh:
            for start in range(0, len(source), len(source) // 8 + 1):
                fh.write(source[start : start + len(source) // 8 + 1])
                fh.flush()
                time.sleep(0.15)  # pauses shorter than the 0.3 s window
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not done.is_set():
        drop.ingester.tick()
        assert scans(drop.url) == [], "taken while still being written"
        time.sleep(0.03)
    thread.join()
    [row] = drop.settle(1)
    assert row.size_bytes == len(source)


def test_symlinks_out_of_the_folder_are_refused(drop: Drop, tmp_path: Path) -> None:
    outside = write_png(tmp_path / "outside.png", 1)
    inside = write_png(drop.root / "real.png", 2)
    (drop.root / "escape.png").symlink_to(outside)
    (drop.root / "alias.png").symlink_to(inside)
    os.mkfifo(drop.root / "pipe.dcm")
    got = drop.settle(2)
    assert {Path(r.path).name for r in got} == {"real.png", "alias.png"}
    assert str(drop.root / "escape.png") in drop.ingester.refused
    assert sorted(r.status for r in got) == ["queued", "skipped"]  # one file, two names
    dup = next(r for r in got if r.status == "skipped")
    assert "same content" in (dup.reason or "")


def test_copies_under_two_names_are_recorded_once_as_scans(drop: Drop) -> None:
    first = write_png(drop.root / "one.png", 3)
    (drop.root / "two.png").write_bytes(first.read_bytes())
    got = drop.settle(2)
    queued = [r for r in got if r.status == "queued"]
    skipped = [r for r in got if r.status == "skipped"]
    assert len(queued) == 1 and len(skipped) == 1
    assert skipped[0].duplicate_of_id == queued[0].id
    assert drop.sent_ids == [queued[0].id]


def test_a_touched_file_is_not_recorded_again_but_new_content_is(drop: Drop) -> None:
    path = write_png(drop.root / "a.png", 1)
    drop.settle(1)
    os.utime(path, (time.time() + 5, time.time() + 5))
    drop.ingester._next_rescan = 0
    assert len(drop.settle(1)) == 1
    write_png(path, 2, size=(50, 50))
    got = drop.settle(2)
    assert got[1].path == str(path) and got[1].sha256 != got[0].sha256


@pytest.mark.parametrize("policy", ["move", "delete"])
def test_after_scoring_policies(
    sqlite_url: str, tmp_path: Path, random_weights: Path, policy: str
) -> None:
    drop = Drop(sqlite_url, tmp_path / "drop", random_weights, after_scoring=policy)
    good = write_png(drop.root / "x" / "good.png", 1)
    (drop.root / "x" / "good.png.json").write_text("{}")
    drop.settle(1)
    finish_all(sqlite_url)
    bad = write_png(drop.root / "bad.png", 2)
    drop.settle(2)
    with db.session_scope(sqlite_url) as s:
        s.execute(update(Scan).where(Scan.path == str(bad)).values(status="failed"))
    until(
        drop.ticking(lambda: all(r.disposed_at is not None for r in scans(sqlite_url))),
        10,
        "every scored file disposed of",
    )
    assert not good.exists() and not bad.exists()
    assert not (drop.root / "x" / "good.png.json").exists()
    got = {Path(r.path).name: r for r in scans(sqlite_url)}
    if policy == "move":
        assert (drop.root / "done" / "x" / "good.png").is_file()
        assert (drop.root / "done" / "x" / "good.png.json").is_file()
        assert (drop.root / "failed" / "bad.png").is_file()
        assert got["good.png"].disposition == "moved"
        assert got["good.png"].disposed_path == str(drop.root / "done" / "x" / "good.png")
    else:
        assert got["good.png"].disposition == "deleted"
    # the same file sent again is a new delivery: recorded, as a duplicate of the first
    write_png(good, 1)
    again = drop.settle(3)[-1]
    assert again.status == "skipped" and again.duplicate_of_id == got["good.png"].id
    assert len(scans(sqlite_url)) == 3  # done/ and failed/ are never ingested


@pytest.mark.parametrize("polling", [False, True])
def test_the_live_observer_sees_new_files_and_folders(
    sqlite_url: str, tmp_path: Path, random_weights: Path, polling: bool
) -> None:
    settings = make_settings(
        sqlite_url, random_weights, stable_seconds=0.3, polling=polling, rescan_seconds=3600
    )
    sent: list[list[int]] = []
    ingester = Ingester(tmp_path / "drop", settings, sent.append)
    stop = threading.Event()
    thread = threading.Thread(target=ingester.run, args=(stop,))
    thread.start()
    try:
        until(lambda: ingester.idle, 10, "the ingester to be idle")
        write_png(tmp_path / "drop" / "new.png", 1)
        staged = tmp_path / "staging"
        write_png(staged / "a.png", 2)
        write_png(staged / "deep" / "b.png", 3)
        staged.rename(tmp_path / "drop" / "arrived")  # a whole folder moved in
        until(lambda: len(scans(sqlite_url)) == 3, 15, "3 scans recorded")
        until(lambda: sum(len(b) for b in sent) == 3, 5, "3 scan ids sent")
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


class Live:
    """An ingester running its own loop with the inotify observer, recording when each
    batch of ids was sent."""

    def __init__(self, url: str, root: Path, weights: Path, **overrides: Any) -> None:
        overrides.setdefault("rescan_seconds", 3600)
        self.settings = make_settings(url, weights, **overrides)
        self.sent: list[tuple[float, list[int]]] = []
        self.ingester = Ingester(
            root, self.settings, lambda ids: self.sent.append((time.monotonic(), ids))
        )
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.ingester.run, args=(self.stop,))

    def __enter__(self) -> Live:
        self.thread.start()
        until(lambda: self.ingester.idle, 10, "the ingester to be idle")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


def test_a_file_renamed_in_is_taken_without_the_stability_window(
    sqlite_url: str, tmp_path: Path, random_weights: Path
) -> None:
    staged = write_png(tmp_path / "staging" / "a.png", 1)
    with Live(sqlite_url, tmp_path / "drop", random_weights, stable_seconds=30) as live:
        dropped = time.monotonic()
        staged.rename(tmp_path / "drop" / "a.png")
        until(lambda: bool(live.sent), 5, "a batch sent")
    assert live.sent[0][0] - dropped < 2.0  # a 30 s window would still be running
    [row] = scans(sqlite_url)
    assert row.path == str(tmp_path / "drop" / "a.png")


def test_without_settle_on_close_the_window_applies(
    sqlite_url: str, tmp_path: Path, random_weights: Path
) -> None:
    staged = write_png(tmp_path / "staging" / "a.png", 1)
    with Live(
        sqlite_url, tmp_path / "drop", random_weights, stable_seconds=1.5, settle_on_close=False
    ) as live:
        dropped = time.monotonic()
        staged.rename(tmp_path / "drop" / "a.png")
        until(lambda: bool(live.sent), 10, "a batch sent")
    assert live.sent[0][0] - dropped >= 1.5


def test_a_file_still_open_for_writing_waits_for_its_close(
    sqlite_url: str, tmp_path: Path, random_weights: Path
) -> None:
    """Written in place with pauses longer than the window: not taken while the writer
    holds it open (no close event yet, and it keeps changing); taken soon after close."""
    source = write_png(tmp_path / "big.png", 7, size=(300, 300)).read_bytes()
    target = tmp_path / "drop" / "slow.png"
    with Live(sqlite_url, tmp_path / "drop", random_weights, stable_seconds=5) as live:
        with target.open("wb") as fh:
            step = len(source) // 4 + 1
            for start in range(0, len(source), step):
                fh.write(source[start : start + step])
                fh.flush()
                time.sleep(0.4)  # several ingester ticks between writes
                assert not live.sent, "taken while its writer still had it open"
        closed = time.monotonic()
        until(lambda: bool(live.sent), 5, "a batch sent")
    assert live.sent[0][0] - closed < 2.0
    [row] = scans(sqlite_url)
    assert row.size_bytes == len(source)


def test_a_file_appended_after_its_close_is_recorded_again(
    sqlite_url: str, tmp_path: Path, random_weights: Path
) -> None:
    """A writer that closes and reopens: the early take loses nothing, the final content
    is recorded as a new scan."""
    first = write_png(tmp_path / "one.png", 1).read_bytes()
    target = tmp_path / "drop" / "grow.png"
    with Live(sqlite_url, tmp_path / "drop", random_weights, stable_seconds=5) as live:
        target.write_bytes(first)
        until(lambda: len(scans(sqlite_url)) == 1, 5, "1 scan recorded")
        with target.open("ab") as fh:
            fh.write(b"trailing bytes written after a first close")
        until(lambda: len(scans(sqlite_url)) == 2, 5, "2 scans recorded")
        until(lambda: sum(len(ids) for _, ids in live.sent) == 2, 5, "2 scan ids sent")
    rows = scans(sqlite_url)
    assert [r.size_bytes for r in rows] == [len(first), target.stat().st_size]
    assert rows[0].sha256 != rows[1].sha256


def test_reading_files_in_the_folder_sends_the_ingester_no_events(
    sqlite_url: str, tmp_path: Path, random_weights: Path
) -> None:
    """Hashing here and decoding in the scoring processes open and read every file: the
    observer asks inotify only for the changes the ingester acts on, so those reads cost
    its threads nothing."""
    seen: list[str] = []
    with Live(sqlite_url, tmp_path / "drop", random_weights, stable_seconds=5) as live:
        events = live.ingester._events
        dispatch = events.dispatch

        def spy(event: Any) -> None:
            seen.append(event.event_type)
            dispatch(event)

        events.dispatch = spy  # type: ignore[method-assign]
        png = write_png(tmp_path / "drop" / "a.png", 1)
        until(lambda: bool(live.sent), 5, "a batch sent")
        assert "closed" in seen  # the write was seen
        seen.clear()
        for _ in range(5):
            png.read_bytes()
        time.sleep(0.5)
    assert seen == []


@pytest.mark.parametrize("polling", [False, True], ids=["inotify", "polling"])
def test_names_that_are_not_utf8_arriving_live_are_recorded_escaped(
    sqlite_url: str, tmp_path: Path, random_weights: Path, polling: bool
) -> None:
    """Found by an inotify event (no rescan in the test's time) or by the poll: the name
    reaches the ledger escaped, with its bytes."""
    root = os.fsencode(tmp_path / "drop")
    names = [b"caf\xe9.png", b"line\nbreak\x1b[1m.png"]
    with Live(sqlite_url, tmp_path / "drop", random_weights, polling=polling):
        for i, name in enumerate(names):
            staged = write_png(tmp_path / f"staged{i}.png", i)
            os.rename(staged, os.path.join(root, name))
        until(lambda: len(scans(sqlite_url)) == 2, 15, "2 scans recorded")
    rows = {bytes(r.path_bytes or b""): r for r in scans(sqlite_url)}
    assert set(rows) == {os.path.join(root, n) for n in names}
    assert rows[os.path.join(root, names[0])].path == str(tmp_path / "drop" / "caf\\xe9.png")
    assert all(r.path.isprintable() for r in rows.values())

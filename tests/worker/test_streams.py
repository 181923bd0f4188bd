"""Two batches in hand at once: the pipeline's decoders, the embedded runner's threads, and
``process_scans`` with a scorer of two inference streams."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from sqlalchemy import select

import db
from db.models import Scan, ScanScore
from model import Scorer
from tests.helpers.files import make_settings, write_png
from tests.helpers.ledger import receive
from tests.helpers.poll import until
from worker.decoding import Decoder
from worker.scoring import BatchResult, ScoringContext, process_scans
from worker.scoring.inference import InferenceQueue
from worker.scoring.work import ScanWork
from worker.transport import embedded as runner_module
from worker.transport.embedded import Runner

CINE = str(get_testdata_file("examples_ybr_color.dcm"))


@pytest.fixture(scope="module")
def scorer2(random_weights: Path) -> Iterator[Scorer]:
    """Two single-threaded inference streams, batches of 2 frames."""
    import torch

    before = torch.get_num_threads()
    scorer = Scorer.load(random_weights, precision="fp32", threads=2, streams=2, batch_size=2)
    assert scorer.streams == 2
    yield scorer
    scorer.close()
    torch.set_num_threads(before)


# --- the pipeline's decoders ---------------------------------------------------------------


def test_each_batch_in_hand_leases_its_own_decoder(sqlite_url: str, random_weights: Path) -> None:
    pipeline = ScoringContext(make_settings(sqlite_url, random_weights), batches=2)
    assert len(pipeline.decoders) == 2 and pipeline.decoders[0] is not pipeline.decoders[1]
    third: list[Decoder] = []
    got = threading.Event()

    def lease() -> None:
        with pipeline.decoder() as d:
            third.append(d)
            got.set()

    with pipeline.decoder() as a:
        with pipeline.decoder() as b:
            assert a is not b and {id(a), id(b)} == {id(d) for d in pipeline.decoders}
            waiter = threading.Thread(target=lease, daemon=True)
            waiter.start()
            assert not got.wait(0.3)  # both in use: the third holder waits
        assert got.wait(10)  # b came back: the waiter has it
        assert third == [b]
    waiter.join(10)
    assert not waiter.is_alive()
    assert len(ScoringContext(make_settings(sqlite_url, random_weights)).decoders) == 1


def test_load_hands_the_preset_to_every_decoder(
    sqlite_url: str, random_weights: Path, scorer: Any, tmp_path: Path
) -> None:
    pipeline = ScoringContext(make_settings(sqlite_url, random_weights), scorer=scorer, batches=2)
    pipeline.start()  # the children run before the preset is known
    try:
        assert all(d.pid is not None and d.preprocess is None for d in pipeline.decoders)
        pids = [d.pid for d in pipeline.decoders]
        pipeline.load()
        preset = scorer.checkpoint.preprocess.to_dict()
        assert [d.preprocess for d in pipeline.decoders] == [preset, preset]
        png = write_png(tmp_path / "rgb.png", seed=1, size=(40, 90, 3))
        for d in pipeline.decoders:
            d.open(str(png))
            [(_, image)] = list(d.frames())
            assert image.shape == (256, 256) and image.dtype == np.uint8
        assert [d.pid for d in pipeline.decoders] == pids
    finally:
        pipeline.close()


# --- the embedded runner -------------------------------------------------------------------


class FakeBatches:
    """Stands in for process_scans: records the batches, how many ran at once, and holds
    each until its runner thread's gate opens (:meth:`open`) or :attr:`release` is set."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.gates: dict[str, threading.Event] = {}
        self.batches: list[list[int]] = []
        self.started: list[float] = []
        self.running = 0
        self.most = 0

    def open(self, thread_name: str) -> None:
        with self.lock:
            self.gates.setdefault(thread_name, threading.Event()).set()

    def __call__(
        self, ids: list[int], pipeline: ScoringContext, token: str | None = None
    ) -> BatchResult:
        with self.lock:
            gate = self.gates.setdefault(threading.current_thread().name, threading.Event())
            self.batches.append(list(ids))
            self.started.append(time.time())
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            until(
                lambda: gate.is_set() or self.release.is_set(),
                30,
                "the gate or the release",
                interval=0.01,
            )
        finally:
            with self.lock:
                self.running -= 1
        return BatchResult(token=token or "", statuses={i: "scored" for i in ids})


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBatches]:
    batches = FakeBatches()
    monkeypatch.setattr(runner_module, "process_scans", batches)
    yield batches
    batches.release.set()


def test_the_runner_scores_two_batches_at_once(
    sqlite_url: str, random_weights: Path, fake: FakeBatches
) -> None:
    runner = Runner(ScoringContext(make_settings(sqlite_url, random_weights), batches=2))
    assert runner.workers == 2 and runner.busy_since is None and runner.idle
    runner.start()
    try:
        before = time.time()
        runner.submit([1])
        until(lambda: len(fake.batches) == 1, 30, "the first batch", interval=0.01)
        oldest = runner.busy_since
        assert oldest is not None and before <= oldest <= fake.started[0]
        runner.submit([2])
        # the second batch starts while the first is still in hand
        until(lambda: len(fake.batches) == 2, 30, "the second batch", interval=0.01)
        assert fake.running == 2 and fake.batches == [[1], [2]]
        assert runner.busy_since == oldest  # the oldest batch in hand
        assert not runner.idle
        fake.release.set()
        until(lambda: runner.idle, 30, "the runner to be idle", interval=0.01)
        assert runner.busy_since is None and runner.batches == 2 and runner.failed == 0
    finally:
        fake.release.set()
        runner.stop(timeout=10)
    assert len(runner._threads) == 2 and not any(t.is_alive() for t in runner._threads)
    assert fake.most == 2


def test_stop_lets_both_batches_in_hand_finish(
    sqlite_url: str, random_weights: Path, fake: FakeBatches
) -> None:
    runner = Runner(ScoringContext(make_settings(sqlite_url, random_weights), batches=2))
    runner.start()
    runner.submit([1])
    until(lambda: fake.running == 1, 30, "one stream running", interval=0.01)
    runner.submit([2])
    until(lambda: fake.running == 2, 30, "two streams running", interval=0.01)
    stopper = threading.Thread(target=runner.stop, daemon=True)
    stopper.start()
    fake.open("usqa-runner-0")  # one batch ends; the other thread's is still in hand
    until(lambda: fake.running == 1, 30, "one stream running", interval=0.01)
    time.sleep(0.2)
    assert stopper.is_alive() and runner.busy_since is not None
    fake.release.set()
    stopper.join(10)
    assert not stopper.is_alive() and not any(t.is_alive() for t in runner._threads)
    assert runner.batches == 2 and runner.idle
    runner.submit([3])  # stopped: queued work stays queued
    time.sleep(0.2)
    assert len(fake.batches) == 2 and not runner.idle


def test_a_runner_with_one_decoder_scores_one_batch_at_a_time(
    sqlite_url: str, random_weights: Path, fake: FakeBatches
) -> None:
    runner = Runner(ScoringContext(make_settings(sqlite_url, random_weights)))
    assert runner.workers == 1
    runner.start()
    try:
        runner.submit([1])
        until(lambda: len(fake.batches) == 1, 30, "the first batch", interval=0.01)
        runner.submit([2])
        time.sleep(0.3)
        assert fake.batches == [[1]] and not runner.idle  # the second waits for the first
        fake.release.set()
        until(lambda: runner.idle, 30, "the runner to be idle", interval=0.01)
    finally:
        fake.release.set()
        runner.stop(timeout=10)
    assert fake.batches == [[1], [2]] and fake.most == 1


def test_the_runner_merges_fresh_work_up_to_its_size(
    sqlite_url: str, random_weights: Path, fake: FakeBatches
) -> None:
    fake.release.set()
    runner = Runner(ScoringContext(make_settings(sqlite_url, random_weights), batches=2))
    assert runner.size == 64  # files_per_task is 4 in these settings
    for i in range(100):
        runner.submit([i])
    runner.submit([500, 501], token="retry-token")  # a retry keeps its own batch
    runner.start()
    try:
        until(lambda: runner.idle, 30, "the runner to be idle", interval=0.01)
    finally:
        runner.stop(timeout=10)
    assert sorted(map(len, fake.batches)) == [2, 36, 64]
    assert [500, 501] in fake.batches
    assert sorted(i for b in fake.batches for i in b) == [*range(100), 500, 501]
    big = Runner(ScoringContext(make_settings(sqlite_url, random_weights, files_per_task=100)))
    assert big.size == 100


# --- inference across scans with two streams -----------------------------------------------


def _work(scan_id: int, name: str) -> ScanWork:
    return ScanWork(SimpleNamespace(id=scan_id, path=name))  # type: ignore[arg-type]


def test_a_broken_frame_fails_its_own_scan_only(scorer2: Scorer) -> None:
    fake_pipeline: Any = SimpleNamespace(settings=SimpleNamespace(batch_size=2), scorer=scorer2)
    inference = InferenceQueue(fake_pipeline, reraise=())
    assert (inference.size, inference.streams) == (2, 2)
    rng = np.random.default_rng(0)
    a, bad, c = _work(1, "a.png"), _work(2, "tiny.png"), _work(3, "c.png")
    frames = {
        (1, 0): rng.integers(0, 256, (60, 90, 3), dtype=np.uint8),
        (1, 1): rng.integers(0, 256, (256, 256), dtype=np.uint8),
        (3, 0): rng.integers(0, 256, (70, 50), dtype=np.uint8),
        (3, 1): rng.integers(0, 256, (80, 80), dtype=np.uint8),
    }
    inference.add(a, 0, frames[1, 0])
    inference.add(bad, 0, np.zeros((4, 4), dtype=np.uint8))  # batch 1: a and the broken frame
    inference.add(c, 0, frames[3, 0])
    inference.add(a, 1, frames[1, 1])  # batch 2, beside batch 1
    assert len(inference.running) == 2
    inference.add(c, 1, frames[3, 1])
    inference.finish()
    assert not inference.running and not inference.pending
    assert bad.outcome is not None and bad.outcome.status == "failed"
    assert "tiny.png: its frames could not be scored" in bad.outcome.reason
    assert "too small" in bad.outcome.reason and bad.reason_class == "scoring"
    assert bad.frame_scores == []
    for work in (a, c):
        assert work.outcome is None and work.frames == 2
        assert [i for i, _ in work.frame_scores] == [0, 1]
        expected = [scorer2.score_frames([frames[work.scan.id, i]])[0] for i in (0, 1)]
        np.testing.assert_allclose([s for _, s in work.frame_scores], expected, atol=1e-3)


@pytest.fixture
def stream_pipeline(
    sqlite_url: str, random_weights: Path, scorer2: Scorer
) -> Iterator[Callable[[], ScoringContext]]:
    made: list[ScoringContext] = []

    def build() -> ScoringContext:
        settings = make_settings(sqlite_url, random_weights, batch_size=2)
        pipeline = ScoringContext(settings, scorer=scorer2, batches=2)
        pipeline.start()
        made.append(pipeline)
        return pipeline

    yield build
    for pipeline in made:
        pipeline.close()


@pytest.mark.parametrize("in_child", [True, False], ids=["decoder-preprocesses", "raw-frames"])
def test_process_scans_with_two_streams_fails_only_the_broken_scan(
    in_child: bool,
    sqlite_url: str,
    tmp_path: Path,
    scorer2: Scorer,
    stream_pipeline: Callable[[], ScoringContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The too-small frame is refused by the decoder child (which preprocesses), or, when
    the child hands over raw frames, breaks the inference batch it shares with a neighbour:
    either way that scan alone fails and the others keep their scores."""
    if not in_child:
        monkeypatch.setattr(Decoder, "set_preprocess", lambda self, preset: None)
    good = write_png(tmp_path / "a.png", 1, size=(60, 90, 3))
    tiny = write_png(tmp_path / "tiny.png", 2, size=(4, 6))
    other = write_png(tmp_path / "b.png", 3, size=(120, 40))
    cine = tmp_path / "cine.dcm"
    cine.write_bytes(Path(CINE).read_bytes())
    ids = [receive(sqlite_url, p) for p in (good, tiny, other, cine)]
    pipeline = stream_pipeline()
    result = process_scans(ids, pipeline)
    preset = scorer2.checkpoint.preprocess.to_dict() if in_child else None
    assert [d.preprocess for d in pipeline.decoders] == [preset, preset]
    assert result.statuses == dict(zip(ids, ["scored", "failed", "scored", "scored"], strict=True))
    with db.session_scope(sqlite_url, readonly=True) as s:
        reason = s.get(Scan, ids[1]).reason or ""  # type: ignore[union-attr]
        scores = {x.scan_id: x for x in s.scalars(select(ScanScore)).all()}
    assert "too small" in reason
    assert ("could not be scored" in reason) is not in_child
    assert set(scores) == {ids[0], ids[2], ids[3]} and scores[ids[3]].frames_scored == 16
    from dicom_io import ReadOptions, read

    for scan_id, path in ((ids[0], good), (ids[2], other)):
        [(_, frame)] = list(read(str(path), ReadOptions()).iter_frames())
        expected = float(scorer2.score_frames([frame])[0])
        assert scores[scan_id].score == pytest.approx(expected, abs=1e-3)


def test_an_early_batch_waits_while_the_scorer_has_no_idle_stream() -> None:
    """Two batches in hand share the scorer's streams: a partial batch is only sent early
    when a stream has nothing to do, wherever the batches keeping it busy came from."""
    from types import SimpleNamespace

    from worker.scoring.inference import InferenceQueue

    scorer = SimpleNamespace(streams=2, idle_streams=2)
    pipeline = SimpleNamespace(settings=SimpleNamespace(batch_size=8), scorer=scorer)
    inference = InferenceQueue(pipeline, ())  # type: ignore[arg-type]
    assert inference.idle_stream
    scorer.idle_streams = 0  # both streams busy with the other batch's frames
    assert not inference.idle_stream

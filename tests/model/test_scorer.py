"""The Scorer and Grading contract."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from model import SHIPPED_WEIGHTS, Grading, Scorer
from model.degradations import blur
from model.scorer import Assessment, plan_streams
from worker.errors import ConfigError, InputError, ModelError
from worker.settings import load_settings


def test_scores_any_frames_in_range(random_checkpoint: Path) -> None:
    scorer = Scorer.load(random_checkpoint, precision="fp32", batch_size=2)
    assert scorer.version == scorer.checkpoint.sha256[:12] and len(scorer.version) == 12
    rng = np.random.default_rng(0)
    frames = [
        rng.integers(0, 256, (256, 256), dtype=np.uint8),
        rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
        rng.integers(0, 256, (100, 90), dtype=np.uint8),
    ]
    scores = scorer.score_frames(frames)
    assert scores.dtype == np.float32 and scores.shape == (3,)
    assert np.all((scores >= 0) & (scores <= 100))
    # batching does not change the result
    one_by_one = np.concatenate([scorer.score_frames([f]) for f in frames])
    np.testing.assert_allclose(scores, one_by_one, atol=1e-3)
    assert scorer.score_frames([]).shape == (0,)


def test_bf16_close_to_fp32(random_checkpoint: Path) -> None:
    frames = [
        np.random.default_rng(i).integers(0, 256, (256, 256), dtype=np.uint8) for i in range(4)
    ]
    fp32 = Scorer.load(random_checkpoint, precision="fp32").score_frames(frames)
    bf16 = Scorer.load(random_checkpoint, precision="bf16").score_frames(frames)
    assert np.max(np.abs(fp32 - bf16)) < 5.0  # random weights: only a sanity bound


def test_from_settings_and_bad_options(random_checkpoint: Path) -> None:
    settings = load_settings({"weights": random_checkpoint, "precision": "fp32"}, environ={})
    scorer = Scorer.from_settings(settings)
    assert not scorer.bf16 and scorer.batch_size == settings.batch_size
    with pytest.raises(ConfigError):
        Scorer.load(random_checkpoint, precision="fp64")
    with pytest.raises(ModelError, match="not found"):
        Scorer.load("/nonexistent/weights.pt")


def test_grading() -> None:
    g = Grading()
    assert (g.grade(80), g.grade(79.99), g.grade(45), g.grade(44.9)) == (
        "good",
        "average",
        "average",
        "poor",
    )
    s = g.summarise([90.0, 70.0, 50.0, 30.0])
    assert s.score == s.mean == pytest.approx(60.0)
    assert s.min == 30.0 and s.p10 == pytest.approx(36.0)  # 30 + 0.3 * (50 - 30)
    assert s.grade == "average" and s.frames_scored == 4
    assert Grading(aggregate="min").summarise([90.0, 30.0]).grade == "poor"
    assert Grading(aggregate="p10").summarise([90.0, 80.0]).score == pytest.approx(81.0)
    one = g.summarise([87.25])
    assert (one.score, one.mean, one.min, one.p10) == (87.25,) * 4 and one.grade == "good"
    with pytest.raises(InputError, match="not a finite"):
        g.summarise([float("nan")])
    with pytest.raises(InputError, match="no frames"):
        g.summarise([])
    with pytest.raises(ConfigError):
        Grading(good=40, average=50)
    with pytest.raises(ConfigError):
        Grading(aggregate="max")
    settings = load_settings({"good_threshold": 70.0, "aggregate": "min"}, environ={})
    assert Grading.from_settings(settings) == Grading(good=70.0, average=45.0, aggregate="min")


@pytest.mark.integration
def test_shipped_model_prefers_a_clean_image(busi_test_image: np.ndarray) -> None:
    assert SHIPPED_WEIGHTS.is_file(), f"{SHIPPED_WEIGHTS} is missing from the checkout"
    scorer = Scorer.load()
    clean, blurred = scorer.score_frames([busi_test_image, blur(busi_test_image, 4.0)])
    assert clean >= 80.0  # graded good
    assert blurred < 45.0  # graded poor
    assert clean - blurred > 30.0


@pytest.mark.integration
def test_folding_batchnorm_keeps_the_scores(busi_dir: Path) -> None:
    """fp32: the folded network scores as the plain one (0.05 points). bf16 (``auto`` on a
    CPU with native bf16) rounds the folded weights differently, so it is held to the bf16
    budget instead: within 0.5 points of the plain fp32 network."""
    import csv

    from PIL import Image
    from torch import nn

    with (busi_dir / "splits.csv").open(newline="") as fh:
        rels = [r["path"] for r in csv.DictReader(fh) if r["split"] == "test"][:6]
    frames = [np.asarray(Image.open(busi_dir / rel).convert("L")) for rel in rels]
    plain = Scorer.load(precision="fp32", fold_bn=False)
    folded = Scorer.load(precision="fp32")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.checkpoint.net.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in plain.checkpoint.net.modules())
    a, b = plain.score_frames(frames), folded.score_frames(frames)
    assert float(np.max(np.abs(a - b))) <= 0.05, (a, b)
    assert float(np.ptp(a)) > 1.0  # the images are told apart: the comparison means something
    auto = Scorer.load(precision="auto").score_frames(frames)
    assert float(np.max(np.abs(a - auto))) <= 0.5, (a, auto)


@pytest.mark.parametrize(
    ("device", "threads", "streams", "expected"),
    [
        ("cpu", 1, 0, (1, 1)),
        ("cpu", 1, 1, (1, 1)),
        ("cpu", 1, 2, (2, 1)),
        ("cpu", 2, 0, (2, 1)),
        ("cpu", 2, 1, (1, 2)),
        ("cpu", 2, 2, (2, 1)),
        ("cpu", 4, 0, (2, 2)),
        ("cpu", 4, 1, (1, 4)),
        ("cpu", 4, 2, (2, 2)),
        ("cpu", 8, 0, (2, 4)),
        ("cpu", 8, 1, (1, 8)),
        ("cpu", 8, 2, (2, 4)),
        ("cuda", 8, 0, (1, 8)),
        ("cuda:0", 4, 0, (1, 4)),
        ("cuda", 4, 2, (2, 2)),
    ],
)
def test_plan_streams(device: str, threads: int, streams: int, expected: tuple[int, int]) -> None:
    assert plan_streams(device, threads, streams) == expected


def test_plan_streams_defaults_to_torch_threads_and_rejects_negative(
    monkeypatch: pytest.MonkeyPatch, random_checkpoint: Path
) -> None:
    import torch

    monkeypatch.setattr(torch, "get_num_threads", lambda: 6)
    assert plan_streams("cpu", 0, 0) == (2, 3)
    assert plan_streams("cpu", 0, 3) == (3, 2)
    with pytest.raises(ConfigError, match="streams -1"):
        plan_streams("cpu", 4, -1)
    with pytest.raises(ConfigError, match="streams"):
        Scorer.load(random_checkpoint, precision="fp32", streams=-1)
    with pytest.raises(ConfigError, match="INFERENCE_STREAMS"):
        load_settings({"inference_streams": -1}, environ={})


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights at a 64-pixel preset: quick to score, scores spread inside 0..100."""
    import torch

    from model import Preprocess, build_model, save_checkpoint

    torch.manual_seed(1)
    net = build_model(init="none")
    with torch.no_grad():
        cast(torch.nn.Linear, net.fc).bias.fill_(0.5)
    path = tmp_path_factory.mktemp("small") / "small.pt"
    save_checkpoint(path, net, {"target_scale": 100.0, "preprocess": Preprocess(size=64).to_dict()})
    return path


@pytest.fixture
def two_streams(small_checkpoint: Path) -> Iterator[Scorer]:
    import torch

    before = torch.get_num_threads()
    scorer = Scorer.load(small_checkpoint, precision="fp32", threads=2, streams=2, batch_size=2)
    assert (scorer.streams, torch.get_num_threads()) == (2, 1)  # 2 threads: 1 per stream
    yield scorer
    scorer.close()
    torch.set_num_threads(before)


def _images(n: int, size: int = 64) -> list[np.ndarray]:
    return [
        np.random.default_rng(i).integers(0, 256, (size, size), dtype=np.uint8) for i in range(n)
    ]


def test_streams_score_as_one_stream_does(
    two_streams: Scorer, small_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = _images(7)
    one = Scorer.load(small_checkpoint, precision="fp32", threads=1, streams=1, batch_size=2)
    expected = one.predict(images)
    assert len(set(expected.tolist())) == 7  # distinct scores: the order is checked
    seen: list[tuple[str, int]] = []
    forward = two_streams._forward

    def spy(chunk: Sequence[np.ndarray]) -> Any:
        seen.append((threading.current_thread().name, len(chunk)))
        return forward(chunk)

    monkeypatch.setattr(two_streams, "_forward", spy)
    got = two_streams.predict(images)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    assert sorted(n for _, n in seen) == [1, 2, 2, 2]  # batches of batch_size, in the streams
    assert all(name.startswith("usqa-inference") for name, _ in seen)
    assert two_streams.predict([]).shape == (0,)


def test_submit_scores_in_a_stream_and_raises_there(two_streams: Scorer) -> None:
    rng = np.random.default_rng(5)
    frames = [
        rng.integers(0, 256, (48, 80, 3), dtype=np.uint8),
        rng.integers(0, 256, (64, 64), dtype=np.uint8),
        rng.integers(0, 256, (100, 30), dtype=np.uint8),
    ]
    future = two_streams.submit(frames)
    np.testing.assert_array_equal(
        future.result(timeout=60).scores, two_streams.score_frames(frames)
    )
    broken = two_streams.submit([frames[0], np.zeros((4, 4), dtype=np.uint8)])
    with pytest.raises(InputError, match="too small"):
        broken.result(timeout=60)
    assert len(two_streams.submit(frames[:1]).result(timeout=60)) == 1  # still working


def test_at_most_streams_batches_run_at_once_and_close_ends_them(
    two_streams: Scorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = threading.Lock()
    release = threading.Event()
    running: list[int] = [0, 0]  # now, most at once
    threads: set[threading.Thread] = set()
    forward = two_streams._forward

    def held(chunk: Sequence[np.ndarray]) -> Assessment:
        with lock:
            running[0] += 1
            running[1] = max(running)
            threads.add(threading.current_thread())
        release.wait(30)
        with lock:
            running[0] -= 1
        return forward(chunk)

    monkeypatch.setattr(two_streams, "_forward", held)
    assert two_streams.idle_streams == 2
    first = two_streams.submit(_images(1))
    assert two_streams.idle_streams == 1  # taken as soon as it is submitted
    futures = [first, *(two_streams.submit(_images(1)) for _ in range(2))]
    deadline = time.monotonic() + 30
    while running[0] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert running[0] == 2  # two streams busy, the third batch waits its turn
    assert not futures[2].done()
    assert two_streams.idle_streams == 0
    release.set()
    assert [len(f.result(timeout=60)) for f in futures] == [1] * 3
    assert two_streams.idle_streams == 2  # finished batches free their streams
    assert running[1] == 2 and len(threads) == 2
    two_streams.close()
    assert not any(t.is_alive() for t in threads)
    two_streams.close()  # idempotent
    # a closed scorer (shared by pipelines that each close it) starts its streams again
    assert len(two_streams.submit(_images(1)).result(timeout=60)) == 1


def test_from_settings_passes_the_streams(small_checkpoint: Path) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        settings = load_settings(
            {"weights": small_checkpoint, "threads": 4, "inference_streams": 0}, environ={}
        )
        scorer = Scorer.from_settings(settings)
        assert scorer.streams == 2 and torch.get_num_threads() == 2
        settings = load_settings(
            {"weights": small_checkpoint, "threads": 4, "inference_streams": 1}, environ={}
        )
        assert Scorer.from_settings(settings).streams == 1 and torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)


# --- the compile backend (model.compiled) ---


def test_compile_backend_scores_as_eager_at_every_batch_size(
    small_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.compile with a dynamic batch dimension: full, part-filled and single-frame
    batches score as eager torch does, in two streams, and nothing is compiled after the
    Scorer has loaded (the warm-up compiled what scoring needs)."""
    import torch

    before = torch.get_num_threads()
    images = _images(11)
    eager = Scorer.load(small_checkpoint, precision="fp32", threads=2, streams=2, batch_size=4)
    compiled = Scorer.load(
        small_checkpoint, precision="fp32", threads=2, streams=2, batch_size=4, backend="compile"
    )
    try:
        assert compiled.backend == "compile" and compiled.net is not compiled.checkpoint.net
        want = eager.predict(images)
        assert len(set(want.tolist())) == 11  # distinct scores: a mix-up would show
        calls: list[int] = []
        import torch._dynamo.convert_frame as convert_frame

        original = convert_frame.compile_frame

        def counting(*args: object, **kwargs: object) -> object:
            calls.append(1)
            return original(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(convert_frame, "compile_frame", counting)
        got = compiled.predict(images)  # batches of 4, 4 and 3
        single = compiled.predict(images[:1])
        pair = compiled.predict(images[:2])
        np.testing.assert_allclose(got, want, atol=0.05)
        np.testing.assert_allclose(single, want[:1], atol=0.05)
        np.testing.assert_allclose(pair, want[:2], atol=0.05)
        assert calls == [], "a batch size was compiled after loading"
        # a call the compiled code does not cover (grad mode on) runs eagerly, uncompiled
        x = compiled.checkpoint.preprocess.tensor(images[:3])
        with torch.enable_grad():
            out = compiled.net(x)
        np.testing.assert_allclose(
            out.detach().numpy().reshape(-1) * compiled.checkpoint.target_scale,
            want[:3],
            atol=0.05,
        )
        assert calls == [], "compiled after loading"
    finally:
        eager.close()
        compiled.close()
        torch.set_num_threads(before)


def test_backend_is_checked(small_checkpoint: Path) -> None:
    with pytest.raises(ConfigError, match="backend 'onnx'"):
        Scorer.load(small_checkpoint, precision="fp32", backend="onnx")
    with pytest.raises(ConfigError, match="USQA_BACKEND"):
        load_settings({"backend": "fast"}, environ={})
    settings = load_settings({"weights": small_checkpoint}, environ={"USQA_BACKEND": "eager"})
    assert settings.backend == "eager"


def test_a_failed_compile_is_a_model_error_that_names_the_fix(
    small_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    def broken(net: object, **kwargs: object) -> object:
        def run(*args: object) -> object:
            raise RuntimeError("InductorError: no working C++ compiler found")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.raises(ModelError, match=r"C\+\+ compiler.*USQA_BACKEND=eager"):
        Scorer.load(small_checkpoint, precision="fp32", batch_size=2, backend="compile")

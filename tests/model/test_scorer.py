"""The Scorer and Grading contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model import SHIPPED_WEIGHTS, Grading, Scorer
from model.degradations import blur
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

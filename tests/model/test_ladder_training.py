"""Training ladders: siblings of one image at other severities, and the ranking term."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from model.defects import DEFECTS
from model.degradations import defect_label
from model.preprocess import Preprocess
from model.protocols import LADDER_GAP, DefectProtocol
from model.training.batches import Batch, Data, make_batch, ranking_loss, training_loss
from model.training.config import TrainConfig
from worker.errors import ConfigError

pytestmark = pytest.mark.fast


def _image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tissue = rng.rayleigh(40.0, (64, 64)) + np.linspace(20, 90, 64)[None, :]
    return np.clip(tissue, 0, 255).astype(np.uint8)


def _cfg(**options: float) -> TrainConfig:
    return TrainConfig(
        data=Path("."), splits=Path("."), out=Path("x.pt"), protocol="defects",
        crop=56, size=64, **options,  # type: ignore[arg-type]
    )  # fmt: skip


def test_siblings_share_the_view_and_differ_only_in_severity() -> None:
    protocol = DefectProtocol()
    image = _image()
    degraded = protocol.clean_per_image  # the first degraded slot
    for seed in range(12):
        rungs = protocol.ladder(image, degraded, np.random.default_rng(seed), rungs=3)
        assert len(rungs) >= 2
        first = rungs[0]
        for sibling in rungs[1:]:
            assert sibling.geometry == first.geometry
            assert sibling.defects[0][0] == first.defects[0][0]
            assert sibling.defects[1:] == first.defects[1:]  # a second defect stays as it was
        own = sorted(defect_label(*r.defects[0]) for r in rungs)  # the varied defect's label
        assert all(b - a >= LADDER_GAP for a, b in itertools.pairwise(own))


def test_a_ladder_version_is_the_plain_version_and_a_clean_slot_has_no_sibling() -> None:
    protocol = DefectProtocol()
    image = _image(1)
    for slot in range(protocol.versions_per_image):
        plain = protocol.version(image, slot, np.random.default_rng([slot, 4]))
        rungs = protocol.ladder(image, slot, np.random.default_rng([slot, 4]))
        assert np.array_equal(rungs[0].image, plain.image) and rungs[0].label == plain.label
        if slot < protocol.clean_per_image:
            assert len(rungs) == 1


def test_ladder_batches_pair_siblings_and_cut_them_at_one_window() -> None:
    cfg = _cfg(ladder_share=1.0, rank_weight=2.0, batch_size=10)
    protocol = DefectProtocol()
    outputs = ("score", *DEFECTS, "not_ultrasound")
    images = np.stack([_image(s) for s in range(4)])
    data = Data(cfg, protocol, Preprocess(size=64), images, outputs, 100.0)
    order = np.arange(data.items)
    batch = make_batch(data, order, 0, 0, [])
    assert batch.pairs is not None and len(batch.pairs) >= 3
    assert len(batch.labels) > cfg.batch_size  # siblings come on top of the batch's items
    for hi, lo in batch.pairs.tolist():
        assert batch.labels[hi] > batch.labels[lo]
        assert abs(hi - lo) == 1  # two rungs per ladder, next to each other
    off = make_batch(Data(_cfg(batch_size=10), protocol, Preprocess(size=64), images, outputs,
                          100.0), order, 0, 0, [])  # fmt: skip
    assert off.pairs is None and len(off.labels) == 10


def test_a_clean_rung_is_the_same_view_without_any_defect() -> None:
    protocol = DefectProtocol()
    image = _image(2)
    for seed in range(8):
        rng = np.random.default_rng(seed)
        rungs = protocol.ladder(image, protocol.clean_per_image, rng, rungs=3, clean=True)
        clean = rungs[-1]
        assert clean.defects == () and clean.label == 100.0 and clean.kind == "original"
        assert clean.geometry == rungs[0].geometry
        assert all(r.defects and r.defects[0][0] == rungs[0].defects[0][0] for r in rungs[:-1])
        plain = protocol.make(image, [], **{
            k: v for k, v in protocol.plan(image.shape, protocol.clean_per_image,
                                           np.random.default_rng(seed)).items()
            if k != "defects"})  # fmt: skip
        assert np.array_equal(clean.image, plain.image)  # same view, decoration and crop


def test_longer_ladders_rank_every_two_rungs_of_one_image() -> None:
    cfg = _cfg(ladder_share=1.0, rank_weight=2.0, batch_size=10, ladder_rungs=3,
               ladder_clean=True)  # fmt: skip
    protocol = DefectProtocol()
    outputs = ("score", *DEFECTS, "not_ultrasound")
    images = np.stack([_image(s) for s in range(4)])
    data = Data(cfg, protocol, Preprocess(size=64), images, outputs, 100.0)
    batch = make_batch(data, np.arange(data.items), 0, 0, [])
    assert batch.pairs is not None
    pairs = {tuple(p) for p in batch.pairs.tolist()}
    clean_rows = [i for i, label in enumerate(batch.labels) if label == 100.0]
    # every clean rung ranks above each of its ladder's defect rungs, which sit just before it
    ranked_clean = [r for r in clean_rows if (r, r - 1) in pairs]
    assert ranked_clean
    for row in ranked_clean:
        below = [lo for hi, lo in pairs if hi == row]
        assert len(below) >= 2 and all(row - 3 <= lo < row for lo in below)
    for hi, lo in pairs:
        assert batch.labels[hi] > batch.labels[lo] and abs(hi - lo) <= 3


def test_the_ranking_term_is_zero_in_order_and_grows_as_the_order_is_lost() -> None:
    score = torch.tensor([0.9, 0.5])  # labels 90 and 50
    pairs = torch.tensor([[0, 1]])
    assert float(ranking_loss(torch.tensor([0.9, 0.5]), score, pairs)) == 0.0
    assert float(ranking_loss(torch.tensor([0.8, 0.6]), score, pairs)) == 0.0  # margin 0.2 met
    tied = float(ranking_loss(torch.tensor([0.7, 0.7]), score, pairs))
    swapped = float(ranking_loss(torch.tensor([0.6, 0.8]), score, pairs))
    assert tied == pytest.approx(0.2) and swapped == pytest.approx(0.4)
    # margin 1: the labels' own gap (0.4) is asked; 0.2 of it is missing
    assert float(ranking_loss(torch.tensor([0.8, 0.6]), score, pairs, 1.0)) == pytest.approx(0.2)
    assert float(ranking_loss(torch.tensor([0.9, 0.5]), score, pairs, 1.0)) == 0.0


def test_the_ranking_term_enters_the_loss_with_its_weight() -> None:
    n = len(DEFECTS)
    outputs = ("score", *DEFECTS, "not_ultrasound")
    images = np.zeros((1, 64, 64), np.uint8)
    pairs = torch.tensor([[0, 1]])
    batch = Batch(torch.zeros(1), torch.tensor([0.9, 0.5]), torch.zeros((2, n)), torch.ones(2),
                  np.array([90.0, 50.0]), pairs)  # fmt: skip
    out = torch.zeros((2, n + 2))
    out[:, 0] = torch.tensor([0.7, 0.7])  # both 0.2 off their labels, tied
    plain = Data(_cfg(), DefectProtocol(), Preprocess(size=64), images, outputs, 100.0)
    ranked = Data(_cfg(ladder_share=0.5, rank_weight=3.0), DefectProtocol(),
                  Preprocess(size=64), images, outputs, 100.0)  # fmt: skip
    gap = float(training_loss(ranked, out, batch)) - float(training_loss(plain, out, batch))
    assert gap == pytest.approx(3.0 * 0.2, rel=1e-4)


def test_ranking_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="ladder-share"):
        _cfg(ladder_share=1.5).check()
    with pytest.raises(ConfigError, match="rank-weight"):
        _cfg(rank_weight=-1.0, ladder_share=0.5).check()
    with pytest.raises(ConfigError, match="rank-margin"):
        _cfg(rank_weight=1.0, ladder_share=0.5, rank_margin=1.5).check()
    with pytest.raises(ConfigError, match="needs --ladder-share"):
        _cfg(rank_weight=1.0).check()
    with pytest.raises(ConfigError, match="ladder-rungs"):
        _cfg(ladder_share=0.5, ladder_rungs=1).check()

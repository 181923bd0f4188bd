"""Synthetic other-organ source images, the probe-in-air grain and the weighted defect loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from model.defects import DEFECTS
from model.geometry import Geometry, linear
from model.phantom import PHANTOM_SCENES, phantom, phantoms
from model.protocols import DefectProtocol
from model.training.batches import Batch, Data, training_loss
from model.training.config import TrainConfig
from worker.errors import ConfigError

pytestmark = pytest.mark.fast


def clean_geometry(image: np.ndarray) -> Geometry:
    return linear(*image.shape)


def test_phantoms_are_reproducible_and_look_like_b_mode() -> None:
    a = phantoms(len(PHANTOM_SCENES), 128, seed=4)
    b = phantoms(len(PHANTOM_SCENES), 128, seed=4)
    assert a.shape == (len(PHANTOM_SCENES), 128, 128) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, phantoms(len(PHANTOM_SCENES), 128, seed=5))
    for image in a:
        # mid-grey tissue with speckle, not a flat or saturated picture
        assert 40 < float(image.mean()) < 180
        assert float(image.std()) > 15
        assert float((image == 255).mean()) < 0.05


def test_fluid_scenes_hold_dark_regions() -> None:
    rng = np.random.default_rng(0)
    heart = phantom(128, rng, "heart")
    muscle = phantom(128, np.random.default_rng(0), "muscle")
    assert float((heart < 40).mean()) > float((muscle < 40).mean())


def test_a_phantom_is_a_source_like_any_other() -> None:
    """The defects protocol degrades a phantom with the same curves: clean is 100."""
    protocol = DefectProtocol()
    image = phantoms(1, 128, seed=0)[0]
    clean = protocol.version(image, 0, np.random.default_rng(1))
    assert clean.label == 100.0 and not any(clean.targets or ())
    worse = protocol.make(image, [("no_signal", 1.0)], clean_geometry(image), layout_seed=[1])
    assert worse.label < 25.0 and worse.targets is not None
    assert worse.targets[DEFECTS.index("no_signal")] == 1.0


def test_no_signal_includes_grain_without_tissue() -> None:
    """Many blank frames show the receiver's grain deep in the image, where the ring-down has
    died away (a probe in air with the gain up); none keeps the tissue (grey 120 here)."""
    protocol = DefectProtocol()
    tissue = np.full((256, 256), 120, np.uint8)
    deep = [
        float(
            protocol.make(tissue, [("no_signal", 1.0)], clean_geometry(tissue), [s])
            .image[192:]
            .mean()
        )
        for s in range(40)
    ]
    assert max(deep) < 60
    assert sum(m > 3 for m in deep) >= 16


def test_some_blank_frames_are_an_even_haze_of_averaged_grain() -> None:
    """A lifted probe under persistence, or a black screen's video noise in a resized
    capture, shows a dim, even haze, unlike one frame's full-contrast grain: both kinds of
    blank frame are drawn."""
    protocol = DefectProtocol()
    tissue = np.full((256, 256), 120, np.uint8)
    frames = [
        protocol.make(tissue, [("no_signal", 1.0)], clean_geometry(tissue), [s]).image[64:]
        for s in range(80)
    ]
    dim = [f for f in frames if 1.0 < f.mean() < 40.0]
    even = [f for f in dim if f.std() < 0.25 * f.mean() + 1.0]
    grainy = [f for f in dim if f.std() > 0.5 * f.mean()]
    assert len(even) >= 4 and grainy


def _data(weight: float, low_score_weight: float = 0.0) -> Data:
    cfg = TrainConfig(
        data=Path("."), splits=Path("."), out=Path("x.pt"), protocol="defects",
        defect_pos_weight=weight, low_score_weight=low_score_weight,
    )  # fmt: skip
    outputs = ("score", *DEFECTS, "not_ultrasound")
    return Data(cfg, DefectProtocol(), None, np.zeros((1, 8, 8), np.uint8), outputs, 100.0)  # type: ignore[arg-type]


def test_the_defect_weight_raises_the_cost_of_a_missed_defect() -> None:
    n = len(DEFECTS)
    targets = torch.zeros((2, n))
    targets[:, 0] = 1.0
    batch = Batch(torch.zeros(1), torch.ones(2), targets, torch.ones(2), np.ones(2))
    out = torch.zeros((2, n + 2))
    out[:, 0] = 1.0  # a perfect score; the defects all at p = 0.5
    plain = float(training_loss(_data(1.0), out, batch))
    weighted = float(training_loss(_data(3.0), out, batch))
    per_output = float(np.log(2.0)) / n  # one present defect's BCE at p = 0.5, averaged
    assert weighted - plain == pytest.approx(2.0 * 2.0 * per_output, rel=1e-4)
    with pytest.raises(ConfigError, match="defect-pos-weight"):
        TrainConfig(data=Path("."), splits=Path("."), out=Path("x"), defect_pos_weight=0).check()


def test_the_low_score_weight_raises_the_cost_of_an_error_at_low_labels() -> None:
    n = len(DEFECTS)
    # two versions labelled 0 and 100 (unit targets 0 and 1), both scored 0.1 too high
    batch = Batch(torch.zeros(1), torch.tensor([0.0, 1.0]), torch.zeros((2, n)), torch.ones(2),
                  np.array([0.0, 100.0]))  # fmt: skip
    out = torch.zeros((2, n + 2))
    out[:, 0] = torch.tensor([0.1, 1.1])
    plain = float(training_loss(_data(1.0), out, batch))
    weighted = float(training_loss(_data(1.0, low_score_weight=2.0), out, batch))
    # squared errors 0.01 each: plain mean 0.01; weighted (3 x 0.01 + 1 x 0.01) / 2 = 0.02;
    # the score term counts 10 times in the loss
    assert weighted - plain == pytest.approx(10.0 * 0.01, rel=1e-4)
    with pytest.raises(ConfigError, match="low-score-weight"):
        TrainConfig(data=Path("."), splits=Path("."), out=Path("x"), low_score_weight=-1).check()


def test_a_dual_screen_version_keeps_its_label_and_shows_the_image_twice() -> None:
    import dataclasses

    from model.screen import dual_view

    image = phantoms(1, 128, seed=2)[0]
    dual = dual_view(image, np.random.default_rng(0))
    assert dual.shape == image.shape
    # each half is the image squeezed to half the width (the second maybe mirrored)
    half = np.asarray(Image.fromarray(image).resize((64, 128), Image.Resampling.BILINEAR))
    left = dual[:, :60].astype(float)
    assert np.corrcoef(left.ravel(), half[:, :60].astype(float).ravel())[0, 1] > 0.8
    protocol = dataclasses.replace(DefectProtocol(), dual_share=1.0)
    plain = DefectProtocol()
    for slot in range(5):
        a = protocol.version(image, slot, np.random.default_rng([slot, 1]))
        b = plain.version(image, slot, np.random.default_rng([slot, 1]))
        assert a.label == b.label and a.defects == b.defects
        assert not np.array_equal(a.image, b.image)

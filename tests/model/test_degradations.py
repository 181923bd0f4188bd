"""Degradations and the two label protocols: documented ranges, monotone labels."""

from __future__ import annotations

from typing import cast

import numpy as np
import pytest

from model.degradations import blur, graded_blur_label, graded_jpeg_label, jpeg
from model.protocols import Protocol as LabelProtocol
from model.protocols import get_protocol


def label_protocol(name: str) -> LabelProtocol:
    """A label protocol (paper or graded), typed as one."""
    return cast(LabelProtocol, get_protocol(name))


@pytest.fixture
def image() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, size=(64, 80), dtype=np.uint8)


def test_documented_ranges() -> None:
    paper, graded = label_protocol("paper"), label_protocol("graded")
    assert paper.jpeg_quality == (10.0, 40.0) and paper.blur_sigma == (1.5, 3.0)
    assert graded.jpeg_quality == (5.0, 100.0) and graded.blur_sigma == (0.0, 4.0)
    rng = np.random.default_rng(0)
    for proto in (paper, graded):
        q = np.array([proto.draw("jpeg", rng) for _ in range(2000)])
        s = np.array([proto.draw("blur", rng) for _ in range(2000)])
        assert proto.jpeg_quality[0] <= q.min() and q.max() <= proto.jpeg_quality[1]
        assert proto.blur_sigma[0] <= s.min() and s.max() <= proto.blur_sigma[1]
        # the whole range is used, not one value
        assert q.max() - q.min() > 0.9 * (proto.jpeg_quality[1] - proto.jpeg_quality[0])
        assert s.max() - s.min() > 0.9 * (proto.blur_sigma[1] - proto.blur_sigma[0])


def test_strata_split_the_range() -> None:
    graded = label_protocol("graded")
    rng = np.random.default_rng(0)
    for i in range(3):
        s = [graded.draw("blur", rng, (i, 3)) for _ in range(200)]
        assert i * 4 / 3 <= min(s) and max(s) <= (i + 1) * 4 / 3


def test_paper_labels() -> None:
    paper = label_protocol("paper")
    assert paper.label("original", 0) == 100
    assert paper.label("jpeg", 10) == paper.label("jpeg", 40) == 60
    assert paper.label("blur", 1.5) == paper.label("blur", 3.0) == 30


def test_graded_jpeg_label_is_monotone_and_lossless_at_90() -> None:
    assert graded_jpeg_label(90) == graded_jpeg_label(95) == graded_jpeg_label(100) == 100
    assert graded_jpeg_label(5) == pytest.approx(20)
    assert graded_jpeg_label(50) == pytest.approx(20 + 80 * (45 / 85) ** 0.6)
    qs = np.linspace(5, 89.99, 500)
    labels = np.array([graded_jpeg_label(q) for q in qs])
    assert np.all(np.diff(labels) > 0)
    assert graded_jpeg_label(89.999) == pytest.approx(100, abs=0.01)  # continuous at 90


def test_graded_blur_label_is_monotone() -> None:
    assert graded_blur_label(0) == graded_blur_label(0.4) == 100
    assert graded_blur_label(4) == pytest.approx(20)
    assert graded_blur_label(10) == pytest.approx(20)  # clamped beyond the range
    ss = np.linspace(0.41, 4, 500)
    labels = np.array([graded_blur_label(s) for s in ss])
    assert np.all(np.diff(labels) < 0)
    assert graded_blur_label(0.4001) == pytest.approx(100, abs=0.1)


def test_degradations_change_pixels_by_severity(image: np.ndarray) -> None:
    assert np.array_equal(blur(image, 0), image)
    mild, strong = blur(image, 0.8), blur(image, 3.0)
    assert mild.dtype == np.uint8 and mild.shape == image.shape
    assert np.std(strong.astype(float)) < np.std(mild.astype(float)) < np.std(image.astype(float))
    hq, lq = jpeg(image, 95), jpeg(image, 10)
    assert hq.shape == image.shape and hq.dtype == np.uint8
    err = [np.abs(x.astype(float) - image).mean() for x in (hq, lq)]
    assert err[0] < err[1]


def test_apply_labels_the_version(image: np.ndarray) -> None:
    graded = label_protocol("graded")
    v = graded.apply(image, "jpeg", 30)
    assert v.kind == "jpeg" and v.severity == 30 and v.label == graded_jpeg_label(30)
    with pytest.raises(ValueError, match="unknown degradation"):
        graded.apply(image, "noise", 1)
    with pytest.raises(ValueError, match="unknown protocol"):
        get_protocol("other")

"""The one preprocessing preset."""

from __future__ import annotations

import numpy as np
import pytest

from model.preprocess import Preprocess, to_grey
from worker.errors import InputError


def test_grey_and_rgb_frames() -> None:
    grey = np.full((30, 40), 100, np.uint8)
    assert to_grey(grey) is grey
    same = np.stack([grey] * 3, axis=2)
    assert np.array_equal(to_grey(same), grey)
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[..., 0] = 255
    assert to_grey(rgb)[0, 0] == round(0.299 * 255)


def test_bad_frames_are_input_errors() -> None:
    with pytest.raises(InputError, match="expected shape"):
        to_grey(np.zeros((4, 4, 4, 4), np.uint8))
    with pytest.raises(InputError, match="uint8"):
        to_grey(np.zeros((32, 32), np.uint16))
    with pytest.raises(InputError, match="too small"):
        to_grey(np.zeros((3, 300), np.uint8))


def test_resize_only_when_needed_and_normalise() -> None:
    prep = Preprocess()
    native = np.random.default_rng(0).integers(0, 256, (256, 256), dtype=np.uint8)
    assert prep.image(native) is native  # artifacts reach the network pixel for pixel
    frame = np.zeros((480, 640, 3), np.uint8)
    assert prep.image(frame).shape == (256, 256)
    x = prep.batch([native, frame])
    assert x.shape == (2, 3, 256, 256)
    # black maps to -mean/std in each channel
    expected = -np.array(prep.mean) / np.array(prep.std)
    np.testing.assert_allclose(x[1, :, 0, 0].numpy(), expected, rtol=1e-5)


def test_round_trip_through_dict() -> None:
    prep = Preprocess(size=128)
    assert Preprocess.from_dict(prep.to_dict()) == prep

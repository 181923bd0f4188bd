"""The ``model`` package loads its names on first use, so that the decoder child (which needs
only the preprocessing) never imports torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_every_public_name_loads_and_an_unknown_one_does_not() -> None:
    from model import (
        SHIPPED_WEIGHTS,
        Grading,
        Preprocess,
        ScanScore,
        Scorer,
        build_model,
        load_checkpoint,
        save_checkpoint,
    )
    from model.checkpoint import load_checkpoint as real_load
    from model.checkpoint import save_checkpoint as real_save
    from model.grading import Grading as RealGrading
    from model.grading import ScanScore as RealScanScore
    from model.network import build_model as real_build
    from model.preprocess import Preprocess as RealPreprocess
    from model.scorer import SHIPPED_WEIGHTS as REAL_WEIGHTS
    from model.scorer import Scorer as RealScorer

    assert (Grading, ScanScore, Preprocess, Scorer) == (
        RealGrading,
        RealScanScore,
        RealPreprocess,
        RealScorer,
    )
    assert (build_model, load_checkpoint, save_checkpoint) == (real_build, real_load, real_save)
    assert SHIPPED_WEIGHTS == REAL_WEIGHTS
    import model

    assert sorted(model.__all__) == sorted(
        [
            "SHIPPED_WEIGHTS",
            "Grading",
            "Preprocess",
            "ScanScore",
            "Scorer",
            "build_model",
            "load_checkpoint",
            "save_checkpoint",
        ]
    )
    with pytest.raises(AttributeError, match="no attribute 'Nonesuch'"):
        model.Nonesuch  # noqa: B018
    with pytest.raises(ImportError):
        from model import Nonesuch  # noqa: F401


def test_the_preprocessing_and_the_package_load_without_torch() -> None:
    code = """
import sys
import model
import model.preprocess
import worker.decoding.child
import numpy as np
from model import Preprocess
assert 'torch' not in sys.modules, 'import model/preprocess/decoder loaded torch'
prepare = worker.decoding.child._preparer(Preprocess().to_dict())
assert worker.decoding.child._preparer(None) is None
image = prepare(np.zeros((40, 60, 3), dtype=np.uint8))
assert image.shape == (256, 256) and image.dtype == np.uint8, image.shape
assert 'torch' not in sys.modules, 'the preparer loaded torch'
model.Scorer
assert 'torch' in sys.modules, 'the scorer did not load torch: the check means nothing'
print('ok')
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"

"""Fixtures of the model tests: small random-weight checkpoints and BUSI images."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import pytest
import torch
from PIL import Image

from model.checkpoint import save_checkpoint
from model.network import build_model
from model.preprocess import Preprocess
from model.protocols import get_protocol


def random_meta() -> dict[str, object]:
    return {
        "target_scale": 100.0,
        "preprocess": Preprocess().to_dict(),
        "protocol": get_protocol("graded").to_dict(),
        "data_hash": "test",
        "command": "tests",
        "config": {},
        "metrics": {},
    }


@pytest.fixture
def meta() -> dict[str, object]:
    """Minimal valid checkpoint metadata."""
    return random_meta()


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid checkpoint with random (seeded) weights: for pipeline tests only."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "random.pt"
    net = build_model("none")
    with torch.no_grad():
        cast(torch.nn.Linear, net.fc).bias.fill_(0.6)
    save_checkpoint(path, net, random_meta())
    return path


@pytest.fixture(scope="session")
def busi_test_image(busi_dir: Path) -> np.ndarray:
    """The first BUSI test-split image as uint8 grey (H, W)."""
    import csv

    with (busi_dir / "splits.csv").open(newline="") as fh:
        rel = next(r["path"] for r in csv.DictReader(fh) if r["split"] == "test")
    return np.asarray(Image.open(busi_dir / rel).convert("L"))

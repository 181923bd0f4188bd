"""Tiny real input files, test settings, `usqa` subprocesses, and an ingester driven tick by
tick (the worker and integration tests)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom.data import get_testdata_file

from db.models import Scan
from tests.helpers.ledger import scans
from tests.helpers.poll import until
from worker.ingest import Ingester
from worker.settings import Settings, load_settings

# the fault-injection sitecustomize (for PYTHONPATH of a subprocess under USQA_TEST_FAULTS=1)
FAULTS = Path(__file__).resolve().parents[1] / "integration" / "faults"


def write_png(path: Path, seed: int, size: tuple[int, ...] = (64, 80)) -> Path:
    """A small random PNG (distinct content per seed): grey, or RGB for ``(H, W, 3)``."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rng.random(size) * 255).astype(np.uint8)).save(path)
    return path


def copy_dicom(name: str, dest: Path) -> Path:
    """A copy of one of pydicom's bundled real ultrasound files."""
    source = get_testdata_file(name)
    assert source is not None, name
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)
    return dest


def make_settings(url: str, weights: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "weights": weights,
        "stable_seconds": 0.2,
        "heartbeat_seconds": 0.5,
        "files_per_task": 4,
        "linger_seconds": 0.05,
        "decode_timeout": 30.0,
        "max_attempts": 3,
        "precision": "fp32",
        "threads": 1,
    }
    values.update(overrides)
    return load_settings(values, environ={})


class Drop:
    """An ingester on ``tmp_path/drop`` driven tick by tick, recording what it sends."""

    def __init__(self, url: str, root: Path, weights: Path, **overrides: Any) -> None:
        self.url = url
        self.root = root
        self.sent: list[list[int]] = []
        overrides.setdefault("rescan_seconds", 0.5)  # no observer here: rescans find files
        overrides.setdefault("stable_seconds", 0.3)
        settings = make_settings(url, weights, **overrides)
        self.ingester = Ingester(root, settings, self.sent.append)

    def ticking(self, condition: Callable[[], bool]) -> Callable[[], bool]:
        """``condition``, checked after one more tick of the ingester (for ``until``)."""

        def check() -> bool:
            self.ingester.tick()
            return condition()

        return check

    def settle(self, count: int, timeout: float = 10.0) -> list[Scan]:
        until(
            self.ticking(lambda: len(scans(self.url)) >= count and self.ingester.idle),
            timeout,
            f"{count} scans recorded and the ingester idle",
        )
        for _ in range(3):  # and nothing more arrives
            self.ingester.tick()
            time.sleep(0.1)
        return scans(self.url)

    @property
    def sent_ids(self) -> list[int]:
        return [i for batch in self.sent for i in batch]


def env_for(tmp_path: Path, weights: Path) -> dict[str, str]:
    """The environment of a `usqa` subprocess: this one's, without USQA_ settings but the
    test ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("USQA_")}
    env.update(
        USQA_WEIGHTS=str(weights),
        USQA_STABLE_SECONDS="0.3",
        USQA_HEARTBEAT_SECONDS="0.5",
        USQA_THREADS="1",
        USQA_PRECISION="fp32",
    )
    return env


def usqa(
    args: list[str],
    cwd: Path,
    env: dict[str, str],
    timeout: float = 120,
    wrapper: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run `usqa ARGS` in a subprocess (under ``wrapper``: setpriv...) and wait for it."""
    return subprocess.run(
        [*wrapper, sys.executable, "-m", "worker.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )

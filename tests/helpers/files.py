"""Helpers of the worker and integration tests: tiny real files, test settings, polling, and
an ingester driven tick by tick."""

from __future__ import annotations

import hashlib
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
from sqlalchemy import select, update

import db
from db.models import Scan
from worker.ingest import Ingester
from worker.settings import Settings, load_settings

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


def receive(url: str, path: Path) -> int:
    """Record ``path`` in the ledger as the ingester would; its scan id."""
    import db
    from db import ledger

    st = path.stat()
    with db.session_scope(url) as s:
        return ledger.record_received(
            s,
            path=str(path),
            size_bytes=st.st_size,
            mtime_ns=st.st_mtime_ns,
            sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        ).id


def until(
    condition: Callable[[], bool], timeout: float = 10.0, step: Callable[[], Any] = lambda: None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        step()
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def scans(url: str) -> list[Scan]:
    with db.session_scope(url, readonly=True) as s:
        return list(s.scalars(select(Scan).order_by(Scan.id)).all())


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

    def settle(self, count: int, timeout: float = 10.0) -> list[Scan]:
        until(
            lambda: len(scans(self.url)) >= count and self.ingester.idle,
            timeout,
            self.ingester.tick,
        )
        for _ in range(3):  # and nothing more arrives
            self.ingester.tick()
            time.sleep(0.1)
        return scans(self.url)

    @property
    def sent_ids(self) -> list[int]:
        return [i for batch in self.sent for i in batch]


def finish_all(url: str, status: str = "scored") -> None:
    with db.session_scope(url) as s:
        s.execute(update(Scan).values(status=status, finished_at=db.models.utcnow()))


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

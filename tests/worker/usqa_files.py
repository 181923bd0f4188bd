"""Helpers of the worker and integration tests: tiny real files and test settings."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom.data import get_testdata_file

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

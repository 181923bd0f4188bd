"""The training/evaluation image set: a folder of images and a ``splits.csv``.

``splits.csv`` has a header with at least ``path`` and ``split`` (``train``/``val``/``test``);
``path`` is relative to the data folder. Images are decoded once, converted by the preset's
first two steps (grey, resize) and kept in memory as uint8 (780 BUSI images are 50 MB).
Degraded versions are made from these arrays, so every version stays in its source's split.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from model.preprocess import Preprocess
from model.protocols import AnyProtocol, Degraded
from worker.errors import ConfigError, InputError

__all__ = ["ImageSet", "eval_versions", "load_split"]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass
class ImageSet:
    """Source images of one split, preprocessed to grey ``size x size`` uint8."""

    split: str
    paths: list[str]
    images: np.ndarray  # (N, size, size) uint8
    data_hash: str  # sha256 over (path, split, file sha256) of these images

    def __len__(self) -> int:
        return len(self.paths)


def read_splits(splits: Path) -> list[tuple[str, str]]:
    """(relative path, split) rows of a splits file; ConfigError if it is unusable."""
    try:
        with splits.open(newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or not {"path", "split"} <= set(reader.fieldnames):
                raise ConfigError(
                    f"{splits}: expected a CSV header with 'path' and 'split' columns, "
                    f"got {reader.fieldnames}"
                )
            rows = [(r["path"], r["split"]) for r in reader]
    except OSError as exc:
        raise ConfigError(f"{splits}: cannot read the splits file ({exc.strerror})") from exc
    bad = sorted({s for _, s in rows if s not in SPLITS})
    if bad:
        raise ConfigError(f"{splits}: unknown split names {bad}; expected train, val or test")
    return rows


def load_split(
    data: Path,
    splits: Path,
    split: str,
    preprocess: Preprocess,
    limit: int = 0,
) -> ImageSet:
    """Decode the images of ``split`` (the first ``limit`` of them when ``limit`` > 0)."""
    rows = [p for p, s in read_splits(splits) if s == split]
    if limit > 0:
        rows = rows[:limit]
    if not rows:
        raise ConfigError(f"{splits}: no images in split {split!r}")
    digest = hashlib.sha256()
    images = []
    for rel in rows:
        path = data / rel
        try:
            raw = path.read_bytes()
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: cannot read this training image ({exc})") from exc
        digest.update(f"{rel}\0{split}\0{hashlib.sha256(raw).hexdigest()}\n".encode())
        images.append(preprocess.image(arr))
    log.info("loaded %d %s images from %s", len(rows), split, data)
    return ImageSet(split, rows, np.stack(images), digest.hexdigest())


def eval_versions(
    images: ImageSet, protocol: AnyProtocol, levels: int = 3, seed: int = 20240
) -> tuple[list[Degraded], np.ndarray]:
    """The fixed evaluation set of a split: each source image's versions as the protocol
    makes them (``graded``: the original plus ``levels`` JPEG and blur severities from equal
    strata of each range; ``paper``: one of each; ``defects``: see
    :meth:`model.protocols.DefectProtocol.eval_versions`). Returns the versions and their
    source index."""
    versions: list[Degraded] = []
    source: list[int] = []
    for i, image in enumerate(images.images):
        made = protocol.eval_versions(image, i, levels, seed)
        versions.extend(made)
        source.extend([i] * len(made))
    return versions, np.asarray(source)


def crops(
    images: Sequence[np.ndarray],
    size: int,
    rng: np.random.Generator,
    align: int = 1,
    same_as: Sequence[int] | None = None,
) -> np.ndarray:
    """A random ``size x size`` window of each image (no resampling), its corner on a
    multiple of ``align`` pixels (8 keeps the JPEG block grid where inference sees it).
    ``same_as[i] = j`` (j < i) cuts image ``i`` at image ``j``'s window; -1 draws its own."""
    out = []
    corners: list[tuple[int, int]] = []
    for i, im in enumerate(images):
        h, w = im.shape
        j = same_as[i] if same_as is not None else -1
        if 0 <= j < i:
            y, x = corners[j]
        else:
            y = align * int(rng.integers(0, (h - size) // align + 1))
            x = align * int(rng.integers(0, (w - size) // align + 1))
        corners.append((y, x))
        out.append(im[y : y + size, x : x + size])
    return np.stack(out)

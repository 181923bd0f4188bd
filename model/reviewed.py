"""Reviewers' labels as a training set: what ``usqa export-reviews`` writes and what
``usqa train --protocol reviewed`` fine-tunes a usqa checkpoint on. This module reads only
the exported PNGs' folder and its ``labels.csv`` (never DICOM, never the ledger).

``labels.csv`` (:data:`COLUMNS`), one row per exported frame: ``path`` (relative to the
folder), ``split`` (``train``/``val``, by scan), ``scan_id`` (the ledger's), ``frame``,
``grade``, ``reviewers`` (how many rated the scan) and ``defects`` (``;``-separated).

How the ratings of one scan become its label (:func:`consensus`):

- grade: the median of the reviewers' grades on the scale poor < average < good; with an
  even number of reviewers, the lower of the two middle grades (a panel split evenly takes
  the stricter judgement: a QA set should not call a disputed scan good);
- defects: the names listed by more than half of the scan's reviewers.

How a label becomes the targets of the network's outputs (:class:`ReviewedProtocol`):

- score: the middle of the grade's band under the model's own grade thresholds
  (:class:`model.grading.Grading` defaults, good >= 80, average >= 45): good 90, average
  62.5, poor 22.5 (:func:`grade_targets`). The middle is the point of the band farthest
  from both of its edges, so a fine-tuned score lands inside the reviewer's grade with the
  widest margin, and the scale stays the one the pseudo-labels defined (80: the point where
  one defect alone takes an image out of "good"). A site's own thresholds
  (``USQA_GOOD_THRESHOLD``, ``USQA_AVERAGE_THRESHOLD``) are not used: ``usqa calibrate
  --reviews`` fits those to the same reviewers, and folding them into the weights as well
  would count the reviewers twice.
- defects (a checkpoint with a defect head): 1 for each consensus defect, 0 for the others
  (a reviewer lists the defects they see, so an unlisted one counts as absent).
- not ultrasound (a checkpoint with the gate): 0, "ultrasound", for every exported frame;
  the training loop still mixes in its non-ultrasound material (``--nonus-share``) so that
  the gate keeps both sides.

Every exported frame is one training image with its scan's label, one version per epoch
(the clean frame under the run's geometric augmentation; no synthetic degradation).
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from model.defects import DEFECTS
from model.grading import Grading
from model.protocols import Degraded
from worker.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from model.dataset import ImageSet
    from model.preprocess import Preprocess

__all__ = [
    "COLUMNS",
    "GRADE_ORDER",
    "FineTuneStart",
    "ReviewedLabel",
    "ReviewedProtocol",
    "consensus",
    "fine_tune_start",
    "grade_targets",
    "read_labels",
    "split_scans",
    "write_labels",
]

COLUMNS = ("path", "split", "scan_id", "frame", "grade", "reviewers", "defects")
GRADE_ORDER = ("poor", "average", "good")  # the ordinal scale, worst first
SPLITS = ("train", "val", "test")


def consensus(
    grades: Sequence[str], defects: Sequence[Collection[str]]
) -> tuple[str, tuple[str, ...]]:
    """The label of one scan from its reviewers' grades and defect lists (one of each per
    reviewer): the median grade (ties to the lower) and the majority defects, in the
    vocabulary's order (see the module docstring)."""
    if not grades or len(grades) != len(defects):
        raise ValueError("consensus needs one grade and one defect list per reviewer")
    unknown = sorted(set(grades) - set(GRADE_ORDER))
    if unknown:
        raise ValueError(f"unknown grades {unknown}; expected {', '.join(GRADE_ORDER)}")
    ranks = sorted(GRADE_ORDER.index(g) for g in grades)
    grade = GRADE_ORDER[ranks[(len(ranks) - 1) // 2]]
    counts = Counter(name for seen in defects for name in set(seen))
    majority = [name for name, n in counts.items() if 2 * n > len(grades)]
    order = {name: i for i, name in enumerate(DEFECTS)}
    return grade, tuple(sorted(majority, key=lambda n: (order.get(n, len(order)), n)))


def grade_targets(good: float | None = None, average: float | None = None) -> dict[str, float]:
    """The score target of each grade: the middle of its band between the thresholds
    (default: the model's, :class:`model.grading.Grading`)."""
    default = Grading()
    good = default.good if good is None else good
    average = default.average if average is None else average
    Grading(good=good, average=average)  # the same checks as for scoring
    return {"good": (good + 100.0) / 2.0, "average": (average + good) / 2.0, "poor": average / 2.0}


def split_scans(scan_ids: Collection[int], val_share: float, seed: int) -> dict[int, str]:
    """``train`` or ``val`` per scan id: ``val`` when the scan's draw, ``sha256(seed:id)``
    read as a number in [0, 1), is below ``val_share``. The draw depends on the scan and the
    seed alone, so a scan keeps its split when the set is exported again with more ratings
    (a scan trained on never turns up in a later validation split). With two scans or more
    and a share above 0, each split gets at least one scan: the one with the lowest draw
    goes to ``val`` or the one with the highest to ``train``."""

    def draw(scan_id: int) -> float:
        digest = hashlib.sha256(f"{seed}:{scan_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2.0**64

    ordered = sorted(set(scan_ids), key=draw)
    val = {i for i in ordered if draw(i) < val_share}
    if val_share > 0 and len(ordered) >= 2:
        if not val:
            val.add(ordered[0])
        if len(val) == len(ordered):
            val.discard(ordered[-1])
    return {i: "val" if i in val else "train" for i in ordered}


@dataclass(frozen=True)
class ReviewedLabel:
    """One row of ``labels.csv``: an exported frame and its scan's consensus label."""

    path: str
    split: str
    scan_id: int
    frame: int
    grade: str
    reviewers: int
    defects: tuple[str, ...] = ()

    def row(self) -> dict[str, str]:
        return {
            "path": self.path,
            "split": self.split,
            "scan_id": str(self.scan_id),
            "frame": str(self.frame),
            "grade": self.grade,
            "reviewers": str(self.reviewers),
            "defects": ";".join(self.defects),
        }


def write_labels(path: Path, labels: Iterable[ReviewedLabel]) -> None:
    """Write ``labels.csv`` (atomically: a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(label.row() for label in labels)
    tmp.replace(path)


def _parse(row: dict[str, str], where: str) -> ReviewedLabel:
    try:
        scan_id, frame, reviewers = int(row["scan_id"]), int(row["frame"]), int(row["reviewers"])
    except ValueError as exc:
        raise ConfigError(f"{where}: scan_id, frame and reviewers must be whole numbers") from exc
    if row["grade"] not in GRADE_ORDER:
        raise ConfigError(f"{where}: grade {row['grade']!r}, expected {', '.join(GRADE_ORDER)}")
    if row["split"] not in SPLITS:
        raise ConfigError(f"{where}: split {row['split']!r}, expected train, val or test")
    names = tuple(n for n in (row["defects"] or "").split(";") if n)
    unknown = [n for n in names if n not in DEFECTS]
    if unknown:
        raise ConfigError(
            f"{where}: unknown defects {unknown}; this usqa names {', '.join(DEFECTS)}"
        )
    return ReviewedLabel(row["path"], row["split"], scan_id, frame, row["grade"], reviewers, names)


def read_labels(path: Path) -> list[ReviewedLabel]:
    """The rows of a ``labels.csv`` written by ``usqa export-reviews``, in file order."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = sorted(set(COLUMNS) - set(reader.fieldnames or ()))
            if missing:
                raise ConfigError(
                    f"{path}: missing columns {missing}; expected the labels.csv that "
                    "`usqa export-reviews` writes"
                )
            return [_parse(row, f"{path} line {n}") for n, row in enumerate(reader, start=2)]
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the labels ({exc.strerror or exc})") from exc


@dataclass(frozen=True)
class FineTuneStart:
    """What a fine-tuning run takes from its ``--init`` checkpoint: the preprocessing
    preset, the target (``unit``: output x 100 = score; ``raw``: output = score) and the
    outputs to train (every output of :data:`model.network.OUTPUTS` when the checkpoint
    has a defect head or a gate, else the score only)."""

    preprocess: Preprocess
    target: str
    outputs: tuple[str, ...]

    def check(self, size: int, target: str) -> None:
        """ConfigError unless a run at ``size`` with ``target`` continues this checkpoint."""
        if size != self.preprocess.size:
            raise ConfigError(
                f"--size {size}: the --init checkpoint works on {self.preprocess.size} x "
                f"{self.preprocess.size} images; fine-tune it with --size {self.preprocess.size}"
            )
        if target != self.target:
            raise ConfigError(
                f"--target {target}: the --init checkpoint regresses "
                f"{'label / 100' if self.target == 'unit' else 'the label itself'}; "
                f"fine-tune it with --target {self.target}"
            )


def fine_tune_start(init: str | Path) -> FineTuneStart:
    """Read the usqa checkpoint ``init`` that ``--protocol reviewed`` fine-tunes."""
    from model.checkpoint import load_checkpoint
    from model.network import OUTPUTS, SCORE_ONLY

    if str(init) in ("none", "imagenet") or not Path(init).is_file():
        raise ConfigError(
            f"--init {init}: --protocol reviewed fine-tunes a usqa checkpoint; give its file "
            "with --init (for the model in use: the file USQA_WEIGHTS names, or "
            "model/weights/usqa-resnet18-graded.pt)"
        )
    try:
        ckpt = load_checkpoint(Path(init))
    except ModelError as exc:
        raise ConfigError(f"--init: {exc}") from exc
    if ckpt.target_scale not in (1.0, 100.0):
        raise ConfigError(f"--init {init}: target scale {ckpt.target_scale}, expected 1 or 100")
    outputs = OUTPUTS if len(ckpt.outputs) > 1 else SCORE_ONLY
    return FineTuneStart(ckpt.preprocess, "unit" if ckpt.target_scale == 100.0 else "raw", outputs)


@dataclass(frozen=True)
class ReviewedProtocol:
    """The ``reviewed`` protocol: each training image is an exported frame with its scan's
    label (targets: see the module docstring). ``train`` and ``val`` hold the labels of the
    two splits in the order :func:`model.dataset.load_split` reads their images."""

    train: tuple[ReviewedLabel, ...]
    val: tuple[ReviewedLabel, ...]
    labels_sha256: str
    targets: tuple[tuple[str, float], ...] = tuple(grade_targets().items())
    name: str = "reviewed"

    @classmethod
    def load(cls, labels: Path, limit: int = 0) -> ReviewedProtocol:
        """The protocol of an exported set (``limit`` > 0: the first N rows of each split,
        as ``--limit`` reads the images)."""
        rows = read_labels(labels)
        split = {
            name: tuple(r for r in rows if r.split == name)[: limit or None]
            for name in ("train", "val")
        }
        digest = hashlib.sha256(labels.read_bytes()).hexdigest()
        return cls(split["train"], split["val"], digest)

    @property
    def versions_per_image(self) -> int:
        return 1

    def target(self, grade: str) -> float:
        return dict(self.targets)[grade]

    def labelled(self, image: np.ndarray, label: ReviewedLabel) -> Degraded:
        """``image`` (an exported frame, possibly augmented) with the targets of ``label``."""
        present = set(label.defects)
        return Degraded(
            image=image,
            kind="reviewed",
            severity=0.0,
            label=self.target(label.grade),
            targets=tuple(1.0 if name in present else 0.0 for name in DEFECTS),
            extra={"scan_id": label.scan_id, "frame": label.frame},
        )

    def source_version(self, image: np.ndarray, source: int) -> Degraded:
        """The training version of training image ``source`` (``image``: it, augmented)."""
        return self.labelled(image, self.train[source])

    def val_versions(self, images: ImageSet) -> list[Degraded]:
        """The validation set: each validation frame as it is, with its label."""
        self.check_paths("val", images.paths)
        return [self.labelled(im, lab) for im, lab in zip(images.images, self.val, strict=True)]

    def check_paths(self, split: str, paths: Sequence[str]) -> None:
        """ConfigError unless ``paths`` are the images of ``split`` in label order."""
        labels = self.train if split == "train" else self.val
        if [label.path for label in labels] != list(paths):
            raise ConfigError(
                f"the {split} images read do not match the labels of that split; use the "
                "labels.csv of the exported folder as both --splits and the labels"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description (kept in checkpoints)."""
        return {
            "name": self.name,
            "labels_sha256": self.labels_sha256,
            "images": {"train": len(self.train), "val": len(self.val)},
            "scans": {
                "train": len({r.scan_id for r in self.train}),
                "val": len({r.scan_id for r in self.val}),
            },
            "score_targets": dict(self.targets),
            "consensus": "median grade (ties to the lower); defects seen by most reviewers",
            "defect_targets": "1 for each consensus defect, else 0",
            "not_ultrasound_target": 0.0,
        }

"""``usqa score``: score files now and print the result, without the database.

Each result line (``--json``) holds the score and grade, the frame scores and ``defects``:
the defects named for the file, most probable first, as ``{"name", "probability",
"frames"}`` (probability: the mean over the scored frames; frames: the share of frames at
or above ``USQA_DEFECT_THRESHOLD``), empty for a clean file. ``first_defect`` is the first
of them or null. A file the model judges not to be ultrasound is ``skipped`` with the reason.

Exit codes: 0 every file scored or skipped, 1 at least one file failed, 2 usage or a model
that cannot be loaded.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from db.paths import ledger_path, printable
from worker.commands.options import add_file_options
from worker.errors import InputError, ModelError, SkipScan
from worker.settings import Settings

__all__ = ["add_parser", "run", "score_file"]

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "score",
        help="score DICOM/PNG/JPEG files now and print the results",
        description="Score the image quality of each file (0 = unusable, 100 = as good as "
        "the training images) and grade it good, average or poor. Nothing is written to the "
        "database. A file that cannot be read is reported as failed and the next file is "
        "scored.",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="files to score")
    add_file_options(p)
    p.add_argument(
        "--precision",
        dest="precision",
        choices=["auto", "fp32", "bf16"],
        default=None,
        help="inference precision (USQA_PRECISION)",
    )
    return p


def _batches(frames: Iterator[tuple[int, np.ndarray]], size: int) -> Iterator[list[np.ndarray]]:
    """The frames in lists of at most ``size``."""
    batch: list[np.ndarray] = []
    for _, frame in frames:
        batch.append(frame)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def score_file(path: Path, scorer: Any, grading: Any, options: Any) -> dict[str, Any]:
    """The result line of one file; bad files give ``status`` failed with a ``reason``."""
    from dicom_io import read
    from model.scorer import Assessment

    row: dict[str, Any] = {
        "path": ledger_path(str(path))[0],  # the ledger's text form: strict UTF-8 JSON
        "status": "failed",
        "score": None,
        "grade": None,
        "frames_scored": 0,
        "frame_scores": [],
        "defects": [],
        "first_defect": None,
        "model_version": scorer.version,
        "reason": None,
    }
    try:
        scan = read(path, options)
        if scan.skip_reason:
            row.update(status="skipped", reason=scan.skip_reason)
            return row
        parts = [scorer.assess(b) for b in _batches(scan.iter_frames(), scorer.batch_size)]
        if not parts:
            raise InputError(f"{path}: no frame was selected for scoring")
        result = Assessment.concat(parts)
        frame_scores = result.scores
        summary = grading.summarise(
            frame_scores, result.defects, result.not_ultrasound, result.defect_names
        )
        if summary.skip_reason:
            row.update(status="skipped", reason=summary.skip_reason)
            return row
    except SkipScan as exc:
        row.update(status="skipped", reason=str(exc))
        return row
    except InputError as exc:
        row["reason"] = str(exc)
        return row
    except ModelError:
        raise
    except Exception as exc:  # never let one file stop the batch
        log.exception("unexpected error while scoring %s", path)
        row["reason"] = f"unexpected error: {exc.__class__.__name__}: {exc}"
        return row
    row.update(
        status="scored",
        score=round(summary.score, 2),
        grade=summary.grade,
        frames_scored=summary.frames_scored,
        frame_scores=[round(float(s), 2) for s in frame_scores],
        mean=round(summary.mean, 2),
        min=round(summary.min, 2),
        p10=round(summary.p10, 2),
        defects=[d.as_dict() for d in summary.defects],
        first_defect=summary.first_defect,
    )
    return row


def _table_line(row: dict[str, Any]) -> str:
    score = "" if row["score"] is None else f"{row['score']:.1f}"
    frames = str(row["frames_scored"]) if row["status"] == "scored" else ""
    defect = row.get("first_defect") or ""
    text = (
        f"{row['status']:<8} {score:>6} {row['grade'] or '':<8} {frames:>6} {defect:<17} "
        f"{printable(row['path'])}"
    )
    if row["reason"]:
        text += f"  ({printable(row['reason'])})"
    return text  # one printable line, whatever the file's name holds


def run(args: argparse.Namespace, settings: Settings) -> int:
    from dicom_io import ReadOptions
    from model import Grading, Scorer

    try:
        scorer = Scorer.from_settings(settings)
    except ModelError as exc:
        print(f"usqa: model error: {exc}", file=sys.stderr)
        return 2
    grading = Grading.from_settings(settings)
    options = ReadOptions.from_settings(settings)
    if not scorer.defect_names:
        print(
            f"usqa: model {scorer.version} does not name defects (its checkpoint has no defect "
            "head); every file's defects list is empty",
            file=sys.stderr,
        )
    if not args.json:
        print(f"{'status':<8} {'score':>6} {'grade':<8} {'frames':>6} {'defect':<17} file")
    failed = 0
    for path in args.files:
        row = score_file(path, scorer, grading, options)
        failed += row["status"] == "failed"
        print(json.dumps(row) if args.json else _table_line(row), flush=True)
    if not args.json:
        print(f"model {scorer.version}; {len(args.files)} files, {failed} failed")
    return 1 if failed else 0

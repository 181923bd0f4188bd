"""``usqa export-reviews --out DIR``: the reviewers' ratings as a labelled image set for
fine-tuning with ``usqa train --protocol reviewed``.

For each rated scan (``--model-version``: only the scans that version scored; ``--since`` /
``--until``: only ratings made in that period; ``--min-reviewers``: only scans rated by at
least that many), its file is read where the ledger says it is now (moved to ``done/``, or
where it arrived) and only while it is still the content that was scored (same size and
sha256, unchanged while read: :func:`worker.report.thumbnails.read_verified`). Up to
``--frames`` frames, evenly spaced as scoring picks them, go through the same B-mode crop
as for scoring and are written as 8-bit grey PNGs ``DIR/images/scanNNNNNNN-fFFFF.png``: the
name holds the ledger's scan id and the frame index only, never a DICOM field or the file's
own name. ``DIR/labels.csv`` (:mod:`model.reviewed`) gives each frame its scan's consensus
label and split (by scan, drawn from the scan id and ``--seed``:
:func:`model.reviewed.split_scans`), and ``DIR/README.txt`` says what the set is. A scan
whose file was deleted, moved away, replaced or cannot be read is skipped and listed with
the reason.

The images are pseudonymous by name only: burned-in screen text can still show patient
details, so the folder must be handled as clinical data (a folder made here is readable by
its owner only).

Exit codes: 0 a set was written (skipped scans are listed), 1 nothing could be exported,
2 usage or configuration (including a folder that is not empty).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from worker.commands.options import add_database_option
from worker.commands.rescore import parse_bound
from worker.errors import ConfigError, InputError
from worker.settings import Settings

if TYPE_CHECKING:
    from db.reviews.export import ReviewedScan
    from dicom_io import ReadOptions
    from model.reviewed import ReviewedLabel

__all__ = ["Export", "add_parser", "image_name", "run"]

log = logging.getLogger(__name__)

DEFAULT_FRAMES = 4


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export-reviews",
        help="write the reviewers' ratings as a labelled image set for `usqa train`",
        description="Write each rated scan's frames (B-mode crop, 8-bit grey PNG named by the "
        "ledger's scan id and frame index) and a labels.csv with each scan's consensus "
        "grade and defects and its train/val split, for `usqa train --protocol reviewed "
        "--data DIR --splits DIR/labels.csv --init CHECKPOINT`. The folder holds clinical "
        "images: burned-in text may show patient details.",
    )
    p.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="new or empty folder to write"
    )
    p.add_argument(
        "--model-version",
        dest="export_model_version",
        default=None,
        metavar="V",
        help="only scans that this model version scored (default: every rated scan)",
    )
    p.add_argument(
        "--since", default=None, metavar="T", help="only ratings made since T (date or age)"
    )
    p.add_argument(
        "--until", default=None, metavar="T", help="only ratings made before T (a date: all day)"
    )
    p.add_argument(
        "--min-reviewers",
        type=int,
        default=1,
        metavar="N",
        help="only scans rated by at least N reviewers (default 1)",
    )
    p.add_argument(
        "--val-share",
        type=float,
        default=0.2,
        metavar="F",
        help="share of the scans held out for validation, drawn per scan from its id and "
        "--seed, so a scan keeps its split in later exports (default 0.2)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the train/val assignment (default 0)"
    )
    p.add_argument(
        "--frames",
        dest="export_frames",
        type=int,
        default=DEFAULT_FRAMES,
        metavar="K",
        help=f"frames per cine loop, evenly spaced as scoring picks them (default "
        f"{DEFAULT_FRAMES}, so that a loop does not outweigh single images; 0 = every frame)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    add_database_option(p)
    return p


def image_name(scan_id: int, frame: int) -> str:
    """The exported file name of a frame: the ledger's scan id and the frame index only."""
    return f"scan{scan_id:07d}-f{frame:04d}.png"


@dataclass
class Export:
    """What an export wrote and skipped."""

    labels: list[ReviewedLabel] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (scan id, reason)

    def summary(self, out: Path) -> dict[str, Any]:
        splits: dict[str, dict[str, int]] = {}
        for split in ("train", "val"):
            rows = [r for r in self.labels if r.split == split]
            splits[split] = {"scans": len({r.scan_id for r in rows}), "frames": len(rows)}
        grades = {r.scan_id: r.grade for r in self.labels}
        return {
            "out": str(out),
            "scans": len(grades),
            "frames": len(self.labels),
            "splits": splits,
            "grades": dict(Counter(grades.values())),
            "skipped": [{"scan_id": s, "reason": why} for s, why in self.skipped],
        }


def _checked_args(args: argparse.Namespace) -> tuple[datetime | None, datetime | None]:
    if args.min_reviewers < 1:
        raise ConfigError(f"--min-reviewers {args.min_reviewers}: expected 1 or more")
    if not 0.0 <= args.val_share < 1.0:
        raise ConfigError(f"--val-share {args.val_share}: expected 0 <= share < 1")
    if args.export_frames < 0:
        raise ConfigError(f"--frames {args.export_frames}: expected 0 (every frame) or more")
    since = parse_bound(args.since, "--since", by="received", end=False) if args.since else None
    until = parse_bound(args.until, "--until", by="received", end=True) if args.until else None
    if since is not None and until is not None and since >= until:
        raise ConfigError(f"--since {args.since!r} is not before --until {args.until!r}")
    return since, until


def _prepare_out(out: Path) -> bool:
    """Make ``out`` (owner only) unless it exists empty; True when it was made here."""
    if out.exists():
        if not out.is_dir() or any(out.iterdir()):
            raise ConfigError(
                f"{out}: not an empty folder; export into a new or empty folder (an earlier "
                "export there would mix with this one)"
            )
        return False
    try:
        out.mkdir(parents=True, mode=0o700)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot make the folder ({exc.strerror or exc})") from exc
    return True


def _frames(
    scan: ReviewedScan, options: ReadOptions
) -> tuple[list[tuple[int, np.ndarray]], str | None]:
    """The frames of a rated scan, or none and why."""
    from db.qa.queries import ScannedFile
    from worker.report.thumbnails import GONE, REPLACED, read_verified

    if scan.location is None:
        return [], f"the file was {scan.disposition} after scoring"
    expected = ScannedFile((scan.location,), scan.size_bytes, scan.sha256)
    got = read_verified(Path(scan.location), options, expected)
    if got.skip_reason:
        return [], f"not read as a scan to score ({got.skip_reason})"
    if got.frames:
        return got.frames, None
    why = {GONE: GONE, REPLACED: "the file changed since it was scored"}.get(got.note)
    return [], why or f"{got.note} ({got.error or 'no frame'})"


def _write_frames(
    images: Path, scan_id: int, frames: list[tuple[int, np.ndarray]]
) -> list[tuple[int, str]]:
    """Write each frame as an 8-bit grey PNG; (frame index, path relative to the set)."""
    from PIL import Image

    from model.preprocess import to_grey

    greys = [(index, to_grey(frame)) for index, frame in frames]  # InputError: too small
    written = []
    for index, grey in greys:
        name = image_name(scan_id, index)
        Image.fromarray(grey).save(images / name, format="PNG")
        written.append((index, f"{images.name}/{name}"))
    return written


def export(
    scans: list[ReviewedScan],
    out: Path,
    options: ReadOptions,
    *,
    min_reviewers: int,
    val_share: float,
    seed: int,
) -> Export:
    """Write the frames of ``scans`` under ``out/images``;
    the labels of what was written, split by scan. Raises OSError when ``out`` cannot be
    written."""
    from model.reviewed import ReviewedLabel, consensus, split_scans

    images = out / "images"
    images.mkdir(mode=0o700, exist_ok=True)
    result = Export()
    written: dict[int, tuple[str, tuple[str, ...], int, list[tuple[int, str]]]] = {}
    for scan in scans:
        if len(scan.ratings) < min_reviewers:
            result.skipped.append(
                (scan.scan_id, f"rated by {len(scan.ratings)}, fewer than {min_reviewers}")
            )
            continue
        grade, defects = consensus(
            [r.grade for r in scan.ratings], [r.defects for r in scan.ratings]
        )
        frames, why = _frames(scan, options)
        if why is None:
            try:
                written[scan.scan_id] = (
                    grade,
                    defects,
                    len(scan.ratings),
                    _write_frames(images, scan.scan_id, frames),
                )
            except InputError as exc:
                why = f"a frame could not be written ({exc})"
        if why is not None:
            log.info("scan %d not exported: %s", scan.scan_id, why)
            result.skipped.append((scan.scan_id, why))
    splits = split_scans(written, val_share, seed)
    for scan_id, (grade, defects, reviewers, files) in written.items():
        for frame, path in files:
            result.labels.append(
                ReviewedLabel(path, splits[scan_id], scan_id, frame, grade, reviewers, defects)
            )
    return result


def _readme(summary: dict[str, Any], args: argparse.Namespace, ledger: str) -> str:
    from model.reviewed import grade_targets

    targets = ", ".join(f"{g} {t:g}" for g, t in grade_targets().items())
    period = f"from {args.since or 'the first rating'} until {args.until or 'now'}"
    train, val = summary["splits"]["train"], summary["splits"]["val"]
    grades = ", ".join(f"{g} {summary['grades'].get(g, 0)}" for g in ("good", "average", "poor"))
    return f"""usqa export-reviews: reviewers' ratings as a labelled image set

CLINICAL DATA. The images are named by the ledger's scan id and frame index only (no patient
name or id, no DICOM field, no original file name), but an image can still show burned-in
screen text with patient details. Keep this folder where clinical images may be kept, share
it only with those who may see them, and delete it when the fine-tuning is done.

Written:        {datetime.now(UTC).isoformat(timespec="seconds")}
Ledger:         {ledger}
Model version:  {args.export_model_version or "any (every rated scan)"}
Ratings:        {period}; scans rated by {args.min_reviewers} reviewer(s) or more
Content:        {summary["frames"]} frames of {summary["scans"]} scans ({grades})
Splits:         train {train["scans"]} scans ({train["frames"]} frames), \
val {val["scans"]} scans ({val["frames"]} frames)
Skipped:        {len(summary["skipped"])} rated scans (file gone, changed, unreadable; too few
                reviewers): `usqa export-reviews` listed each with its reason
Frames:         up to {args.export_frames or "every"} per scan, evenly spaced as scoring picks them,
                cut to the B-mode region as for scoring, 8-bit grey PNG in images/

labels.csv: path (relative to this folder), split (train/val, by scan: the frames of one
scan are never in both; a draw of the scan id and seed {args.seed}, val share \
{args.val_share:g}),
scan_id (the ledger's), frame (index in the file), grade (the reviewers' consensus: the
median grade, poor < average < good, the lower of the two middle ones when they split
evenly), reviewers (how many rated the scan), defects (the ones most of its reviewers saw,
separated by ';').

Fine-tune a usqa checkpoint on it:
  usqa train --protocol reviewed --data THIS_FOLDER --splits THIS_FOLDER/labels.csv \\
    --init CHECKPOINT --out fine-tuned.pt
Score targets per grade: {targets}
(the middle of each grade's band under the model's thresholds; see docs/reviews.md).
"""


def _print(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary))
        return
    split = summary["splits"]
    if summary["frames"]:
        print(
            f"exported {summary['frames']} frames of {summary['scans']} scans to "
            f"{summary['out']} (train: {split['train']['scans']} scans, "
            f"{split['train']['frames']} frames; val: {split['val']['scans']} scans, "
            f"{split['val']['frames']} frames)"
        )
    if summary["skipped"]:
        print(f"skipped {len(summary['skipped'])} rated scans:")
        for item in summary["skipped"]:
            print(f"  scan {item['scan_id']}: {item['reason']}")
    if summary["scans"] and not split["val"]["scans"]:
        print(
            "note: no scan is in the val split; `usqa train` needs one: rate more scans or "
            "raise --val-share",
            file=sys.stderr,
        )


def run(args: argparse.Namespace, settings: Settings) -> int:
    import db
    from db.reviews.export import reviewed_scans
    from db.session import shown_url
    from dicom_io import ReadOptions
    from model.reviewed import write_labels

    since, until = _checked_args(args)
    db.require_current(settings.database_url)
    with db.session_scope(settings.database_url, readonly=True) as session:
        scans = reviewed_scans(
            session, model_version=args.export_model_version, since=since, until=until
        )
    if not scans:
        print("usqa export-reviews: no rated scans match; nothing written", file=sys.stderr)
        return 1
    made = _prepare_out(args.out)
    options = dataclasses.replace(
        ReadOptions.from_settings(settings), frames_to_score=args.export_frames
    )
    try:
        result = export(
            scans,
            args.out,
            options,
            min_reviewers=args.min_reviewers,
            val_share=args.val_share,
            seed=args.seed,
        )
        summary = result.summary(args.out)
        if result.labels:
            readme = _readme(summary, args, shown_url(settings.database_url))
            (args.out / "README.txt").write_text(readme, encoding="utf-8")
            write_labels(args.out / "labels.csv", result.labels)
    except OSError as exc:
        print(
            f"usqa export-reviews: cannot write to {args.out}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    _print(summary, args.json)
    if not result.labels:
        (args.out / "images").rmdir()
        if made:
            args.out.rmdir()
        print("usqa export-reviews: no rated scan could be exported", file=sys.stderr)
        return 1
    return 0

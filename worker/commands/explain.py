"""``usqa explain``: where in each frame the evidence for its score and first defect lies.

For each file, each frame scoring would score (dicom_io's read and crop, ``--frames`` /
``USQA_FRAMES_TO_SCORE``) gets ``DIR/NAME-SHA8.fINDEX.png``: the frame as the model saw
it (grey, cropped), the frame with a heatmap of the evidence for a LOW score, and, when the
model names a defect for the file, the frame with a heatmap of the evidence for that first
defect; the one-line legend is drawn under the panels. ``DIR/NAME-SHA8.json`` repeats each
frame's legend with the figures (score, probability, method). Methods per defect:
:data:`model.saliency.METHODS` and docs/explain.md. A model without a defect head explains
the score only, and says so.

A file the ledger knows (``--database-url``) is read only if it is still the content that
was scored (same sha256, unchanged while read); a file changed since is refused with the
reason, and nothing is written for it. A file the ledger does not know is explained as it
is, and the JSON says so.

Exit codes: 0 every file explained or skipped (not ultrasound), 1 a file failed or was
refused, 2 usage or a model that cannot be loaded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from db.paths import ledger_path, printable
from worker.commands.options import add_database_option, add_file_options
from worker.errors import ConfigError, InputError, ModelError, TransientError
from worker.settings import Settings

__all__ = ["add_parser", "explain_file", "run"]

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "explain",
        help="draw where the evidence for each frame's score and first defect lies",
        description="For each scored frame of each file, write a PNG of the frame with a "
        "heatmap of the evidence for a low score and one for the file's first defect "
        "(Grad-CAM or occlusion, see docs/explain.md), with a one-line legend under the "
        "images and in a JSON file beside them. A file the ledger knows is read only while "
        "it is still the content that was scored.",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="files to explain")
    p.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder for the images (made)"
    )
    add_file_options(p)
    add_database_option(p)
    return p


@dataclass(frozen=True)
class Known:
    """What the ledger says of a file: the content to insist on (None: none known), a note
    for the result, or the reason to refuse it."""

    expected: Any = None  # db.qa.queries.ScannedFile
    note: str = ""
    refused: str | None = None


def _content(path: Path) -> tuple[int, str]:
    """Size and sha256 of the file at ``path`` (a regular file, opened without blocking)."""
    import os
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{printable(str(path))}: not a regular file")
        digest = hashlib.sha256()
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return info.st_size, digest.hexdigest()


def _ledger_unavailable(url: str) -> str | None:
    """Why the ledger at ``url`` cannot be asked (None: it can)."""
    import db
    from db.session import shown_url

    if url.startswith("sqlite:///"):  # never make an empty ledger file by asking
        name = url.split(":///", 1)[1].split("?", 1)[0]
        if name and not name.startswith("file:") and not Path(name).is_file():
            return f"no ledger at {shown_url(url)}: not checked against the scored files"
    try:
        db.require_current(url)
    except (ConfigError, TransientError) as exc:
        return f"ledger not checked: {exc}"
    return None


def ledger_check(path: Path, size: int, sha256: str, url: str) -> Known:
    """Whether ``path`` (of ``size`` bytes, ``sha256``) is content the ledger scored."""
    import db
    from db import ledger
    from db.qa.queries import ScannedFile

    why = _ledger_unavailable(url)
    if why is not None:
        return Known(note=why)
    name = printable(str(path))
    with db.session_scope(url, readonly=True) as session:
        original = ledger.find_original(session, sha256)
        if original is not None:
            note = f"the {original.status} content of scan {original.id}"
            return Known(ScannedFile((str(path),), size, sha256), note)
        rows = ledger.known_files(session, [str(path.absolute())]).get(str(path.absolute()))
        if rows and rows[0].sha256 == sha256:  # received, never scored (failed)
            note = f"the content received as scan {rows[0].id} ({rows[0].status})"
            return Known(ScannedFile((str(path),), size, sha256), note)
        if rows:
            scan = rows[0]
            problem = ledger.file_problem(scan) or "its sha256 differs from the recorded one"
            return Known(
                refused=f"{name}: changed since it was received as scan {scan.id} "
                f"({problem}): not explained, it is not the content that was scored"
            )
    return Known(note="not in the ledger: explained as it is now")


def _safe_name(path: Path, sha256: str) -> str:
    """A file name from the file's own name (never a DICOM field) and its content."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem)[:60].strip("._") or "file"
    return f"{stem}-{sha256[:8]}"


def _explain_frames(
    frames: list[tuple[int, np.ndarray]], saliency: Any, grading: Any, base: Path
) -> dict[str, Any]:
    """Write one picture per frame; the figures of the file."""
    from model.overlay import legend, panels, png_bytes

    result = saliency.assess([f for _, f in frames])
    summary = grading.summarise(
        result.scores, result.defects, result.not_ultrasound, result.defect_names
    )
    if summary.skip_reason:
        return {"status": "skipped", "reason": summary.skip_reason}
    first = summary.first_defect
    targets = ["score", *([first] if first else [])]
    note = f"model {saliency.version}"
    if not saliency.defect_names:
        note += ": no defect head, score only"
    written = []
    for index, frame in frames:
        heatmaps = saliency.explain(frame, targets)
        line = legend(heatmaps, first=f"frame {index}", note=note)
        out = base.with_name(f"{base.name}.f{index:04d}.png")
        out.write_bytes(png_bytes(panels(frame, heatmaps, line)))
        written.append(
            {
                "frame": index,
                "png": out.name,
                "legend": line,
                "maps": [
                    {
                        "target": h.target,
                        "method": h.method,
                        "window": h.window,
                        "value": round(h.value, 4),
                    }
                    for h in heatmaps
                ],
            }
        )
    return {
        "status": "explained",
        "score": round(summary.score, 2),
        "grade": summary.grade,
        "first_defect": first,
        "frames": written,
    }


def explain_file(
    path: Path, saliency: Any, grading: Any, options: Any, settings: Settings, out: Path
) -> dict[str, Any]:
    """The result line of one file (``status`` explained, skipped, refused or failed)."""
    from worker.report.thumbnails import read_verified

    row: dict[str, Any] = {
        "path": ledger_path(str(path))[0],
        "status": "failed",
        "model_version": saliency.version,
        "ledger": "",
        "reason": None,
    }
    try:
        size, sha256 = _content(path)
    except OSError as exc:
        row["reason"] = f"{printable(str(path))}: cannot be read ({exc.strerror or exc})"
        return row
    except InputError as exc:
        row["reason"] = str(exc)
        return row
    known = ledger_check(path, size, sha256, settings.database_url)
    row["ledger"] = known.note
    if known.refused:
        row.update(status="refused", reason=known.refused)
        return row
    got = read_verified(path, options, known.expected)
    if got.skip_reason:
        row.update(status="skipped", reason=got.skip_reason)
        return row
    if not got.frames:
        row["reason"] = f"{printable(str(path))}: {got.note}" + (
            f" ({got.error})" if got.error else ""
        )
        if got.note.startswith("file changed"):
            row["status"] = "refused"
        return row
    base = out / _safe_name(path, sha256)
    try:
        row.update(_explain_frames(got.frames, saliency, grading, base))
    except InputError as exc:
        row["reason"] = str(exc)
        return row
    except OSError as exc:
        row["reason"] = f"cannot write to {printable(str(out))}: {exc.strerror or exc}"
        return row
    if row["status"] == "explained":
        sidecar = base.with_name(base.name + ".json")
        sidecar.write_text(json.dumps(row, indent=1) + "\n", encoding="utf-8")
        row["json"] = str(sidecar)
    return row


def _table_line(row: dict[str, Any]) -> str:
    frames = len(row.get("frames") or [])
    defect = row.get("first_defect") or ""
    text = f"{row['status']:<9} {frames:>6} {defect:<17} {printable(row['path'])}"
    extra = row["reason"] or row.get("ledger") or ""
    return text + (f"  ({printable(extra)})" if extra else "")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from dicom_io import ReadOptions
    from model import Grading
    from model.saliency import Saliency

    try:
        saliency = Saliency.load(settings.weights)
    except ModelError as exc:
        print(f"usqa: model error: {exc}", file=sys.stderr)
        return 2
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"usqa explain: cannot make {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if not saliency.defect_names:
        print(
            f"usqa: model {saliency.version} has no defect head: the score is explained, no defect",
            file=sys.stderr,
        )
    grading = Grading.from_settings(settings)
    options = ReadOptions.from_settings(settings)
    if not args.json:
        print(f"{'status':<9} {'frames':>6} {'defect':<17} file")
    bad = 0
    for path in args.files:
        row = explain_file(path, saliency, grading, options, settings, args.out)
        bad += row["status"] in ("failed", "refused")
        print(json.dumps(row) if args.json else _table_line(row), flush=True)
    return 1 if bad else 0

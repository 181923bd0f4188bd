"""``usqa inspect FILE...``: show what the worker will see in each file, without scoring.

One line per file (``--json``: one JSON object per line), in command-line order; a bad
file gives one error line and the next file is still read. ``--preview DIR`` writes one
PNG per file: the first selected frame with the crop box drawn in green.
Exit 0 when every file was read, 1 when any could not be, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any, TextIO

from dicom_io import ReadOptions, Scan, read
from dicom_io.messages import first_line, shown
from worker.errors import ConfigError, InputError
from worker.settings import Settings

__all__ = ["add_parser", "preview_name", "run"]

log = logging.getLogger(__name__)

BOX_COLOUR = (0, 255, 0)


def _frames_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 (every frame) or more")
    return value


def _modalities(text: str) -> tuple[str, ...]:
    return tuple(m.strip().upper() for m in text.split(",") if m.strip())


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "inspect",
        help="show what the worker will see in DICOM/PNG/JPEG files (no scoring)",
        description="Read each file the way the worker does and show its size, frames, "
        "crop box, the frames that would be scored and its QA metadata. Nothing is scored "
        "or stored. Exit 0 when every file was read, 1 when any could not be.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="DICOM, PNG or JPEG files")
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per file per line (for scripts)"
    )
    parser.add_argument(
        "--preview",
        metavar="DIR",
        type=Path,
        help="write one PNG per file into DIR: a scored frame with the crop box drawn",
    )
    parser.add_argument(
        "--frames-to-score",
        dest="frames_to_score",
        type=_frames_count,
        default=None,
        metavar="N",
        help="frames picked per cine loop, evenly spaced; 0 = all (USQA_FRAMES_TO_SCORE)",
    )
    parser.add_argument(
        "--no-crop",
        dest="crop",
        action="store_const",
        const=False,
        default=None,
        help="do not crop to the B-mode image (USQA_CROP=0)",
    )
    parser.add_argument(
        "--modalities",
        dest="modalities",
        type=_modalities,
        default=None,
        metavar="LIST",
        help="DICOM modalities that would be scored, comma separated (USQA_MODALITIES)",
    )
    return parser


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def preview_name(path: Path, taken: set[str]) -> str:
    """A safe, unique preview file name made from the input file's name only."""
    stem = _UNSAFE.sub("_", path.name).lstrip(".")[:120] or "file"
    name, n = f"{stem}.png", 1
    while name.lower() in taken:
        n += 1
        name = f"{stem}-{n}.png"
    taken.add(name.lower())
    return name


def _write_preview(scan: Scan, target: Path) -> None:
    import numpy as np
    from PIL import Image, ImageDraw

    frame = next((f for _, f in scan.iter_frames(cropped=False)), None)
    if frame is None:
        raise InputError(f"{shown(scan.path)}: no frame to preview")
    image = Image.fromarray(np.ascontiguousarray(frame)).convert("RGB")
    box = scan.crop
    if box is not None:
        width = max(1, min(image.size) // 160)
        ImageDraw.Draw(image).rectangle(
            (box.x0, box.y0, box.x1, box.y1), outline=BOX_COLOUR, width=width
        )
    try:
        image.save(target, format="PNG")
    except OSError as exc:
        raise InputError(
            f"{shown(scan.path)}: preview {shown(target)} cannot be written ({first_line(exc)})"
        ) from exc


def _record(scan: Scan) -> dict[str, Any]:
    would_score = scan.skip_reason is None
    crop = None
    if would_score:  # the worker decodes only files it scores; so does inspect
        for _ in scan.iter_frames():
            pass
        box = scan.crop
        crop = box.as_dict() if box is not None else None
    meta = scan.metadata
    return {
        "path": shown(scan.path),
        "status": "ok",
        "kind": scan.kind,
        "modality": meta.get("modality"),
        "frames": scan.frame_count,
        "rows": scan.rows,
        "columns": scan.columns,
        "samples_per_pixel": scan.samples_per_pixel,
        "photometric": meta.get("photometric"),
        "transfer_syntax": meta.get("transfer_syntax"),
        "transfer_syntax_name": meta.get("transfer_syntax_name"),
        "crop": crop,
        "selected_frames": scan.selected_frames,
        "would_score": would_score,
        "skip_reason": scan.skip_reason,
        "notes": scan.notes,
        "metadata": meta,
        "error": None,
    }


def _error_record(path: str, message: str) -> dict[str, Any]:
    return {
        "path": shown(path),
        "status": "error",
        "kind": None,
        "modality": None,
        "frames": None,
        "rows": None,
        "columns": None,
        "samples_per_pixel": None,
        "photometric": None,
        "transfer_syntax": None,
        "transfer_syntax_name": None,
        "crop": None,
        "selected_frames": None,
        "would_score": False,
        "skip_reason": None,
        "notes": [],
        "metadata": None,
        "error": " ".join(message.split()),
    }


def _text_line(record: dict[str, Any]) -> str:
    if record["status"] != "ok":
        return str(record["error"])
    kind = "DICOM" if record["kind"] == "dicom" else "image"
    parts = [
        f"{record['path']}: {kind} {record['modality'] or '-'}",
        f"{record['frames']} frame(s) of {record['columns']} x {record['rows']} "
        f"{record['photometric']}",
    ]
    if record["transfer_syntax_name"]:
        parts.append(record["transfer_syntax_name"])
    crop = record["crop"]
    if crop:
        parts.append(
            f"crop x {crop['x0']}-{crop['x1']} y {crop['y0']}-{crop['y1']} ({crop['source']})"
        )
    if record["would_score"]:
        parts.append(f"would score {len(record['selected_frames'])} frame(s)")
    else:
        parts.append(f"would not score: {record['skip_reason']}")
    parts.extend(f"note: {n}" for n in record["notes"])
    return "; ".join(parts)


def _emit(line: str, stream: TextIO) -> None:
    """Print one line; characters the console cannot show are escaped, never fatal."""
    try:
        print(line, file=stream, flush=True)
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "ascii"
        safe = line.encode(encoding, "backslashreplace").decode(encoding, "replace")
        print(safe, file=stream, flush=True)


def run(args: argparse.Namespace, settings: Settings) -> int:
    options = ReadOptions.from_settings(settings)
    preview_dir: Path | None = args.preview
    if preview_dir is not None:
        try:
            preview_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"--preview {shown(preview_dir)}: cannot create the folder ({first_line(exc)})"
            ) from exc
    taken: set[str] = set()
    failures = 0
    for raw in args.files:
        path = Path(raw)
        try:
            scan = read(path, options)
            record = _record(scan)
            if preview_dir is not None:
                target = preview_dir / preview_name(path, taken)
                _write_preview(scan, target)
                record["preview"] = str(target)
        except InputError as exc:
            record = _error_record(raw, str(exc))
        except Exception as exc:  # a bug must not stop the other files or print a traceback
            log.debug("internal error on %s", shown(raw), exc_info=True)
            record = _error_record(
                raw, f"{shown(raw)}: internal error ({first_line(exc)}); please report this"
            )
        if record["status"] != "ok":
            failures += 1
        if args.json:
            _emit(json.dumps(record), sys.stdout)
        else:
            _emit(_text_line(record), sys.stdout if record["status"] == "ok" else sys.stderr)
    return 1 if failures else 0

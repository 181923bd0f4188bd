"""``usqa evaluate --real``: what the model says about real files, read as the worker reads
them (header, frame selection, B-mode crop), with a preview of the frame it scored."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from worker.errors import InputError, SkipScan
from worker.settings import Settings

__all__ = ["PYDICOM_ULTRASOUND", "real_files_table"]

log = logging.getLogger(__name__)

# pydicom's bundled ultrasound files (real scanner output)
PYDICOM_ULTRASOUND = (
    "examples_ybr_color.dcm",
    "examples_palette.dcm",
    "examples_rgb_color.dcm",
    "examples_jpeg2k.dcm",
)


def _pydicom_examples() -> list[Path]:
    from pydicom.data import get_testdata_file

    out = []
    for name in PYDICOM_ULTRASOUND:
        found = get_testdata_file(name)
        if found:
            out.append(Path(str(found)))
    return out


def _preview(frame: np.ndarray, row: dict[str, Any], path: Path) -> None:
    """The model's input frame with a one-line legend under it."""
    from PIL import Image, ImageDraw, ImageFont

    grey = np.asarray(frame)
    im = Image.fromarray(grey).convert("RGB")
    legend = (
        f"{row['score']:.1f} {row['grade']}; "
        + (", ".join(f"{d['name']} {d['probability']:.2f}" for d in row["defects"]) or "no defect")
        if row["status"] == "scored"
        else f"{row['status']}: {row['reason'] or ''}"[:90]
    )
    canvas = Image.new("RGB", (max(im.width, 256), im.height + 22), "white")
    canvas.paste(im, (0, 0))
    ImageDraw.Draw(canvas).text(
        (4, im.height + 4), legend, fill="black", font=ImageFont.load_default(size=12)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def real_files_table(
    scorer: Any, settings: Settings, files: list[Path], previews: Path | None
) -> list[dict[str, Any]]:
    """One row per file (no FILE: pydicom's ultrasound examples): status, score, grade,
    defects, the not-ultrasound probability, the crop used and the preview written."""
    from dicom_io import ReadOptions, read
    from model import Grading
    from model.scorer import Assessment

    grading = Grading.from_settings(settings)
    options = ReadOptions.from_settings(settings)
    rows = []
    for path in files or _pydicom_examples():
        row: dict[str, Any] = {
            "file": path.name,
            "status": "failed",
            "score": None,
            "grade": None,
            "defects": [],
            "reason": None,
        }
        try:
            scan = read(path, options)
            if scan.skip_reason:
                raise SkipScan(scan.skip_reason)
            frames = [f for _, f in scan.iter_frames()]
            result = Assessment.concat([scorer.assess(frames)])
            summary = grading.summarise(
                result.scores, result.defects, result.not_ultrasound, result.defect_names
            )
            row.update(
                status="skipped" if summary.skip_reason else "scored",
                reason=summary.skip_reason,
                score=round(summary.score, 2),
                grade=summary.grade,
                frames=summary.frames_scored,
                defects=[d.as_dict() for d in summary.defects],
                not_ultrasound=None
                if summary.not_ultrasound is None
                else round(summary.not_ultrasound, 4),
                crop=None if scan.crop is None else scan.crop.as_dict(),
            )
            if previews is not None and frames:
                target = previews / f"{path.name}.png"
                _preview(scorer.checkpoint.preprocess.image(frames[0]), row, target)
                row["preview"] = str(target)
        except (InputError, SkipScan) as exc:
            row.update(status="skipped" if isinstance(exc, SkipScan) else "failed", reason=str(exc))
        rows.append(row)
    return rows

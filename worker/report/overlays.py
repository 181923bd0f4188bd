"""Saliency overlays for ``usqa report --html --thumbnails``: beside each lowest-scoring
scan's thumbnail, the same frame with a heatmap of where the evidence for a low score lies
and one for the first defect the model names for that frame (model/saliency.py; methods in
docs/explain.md).

Computed at report time, on the frame :mod:`worker.report.thumbnails` read after checking
that the file is still the scored content; never stored. The model is the one the settings
name (``USQA_WEIGHTS``, default the shipped one): the legend says which version, since it
may differ from the version that scored the scan.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import numpy as np

from worker.errors import ModelError
from worker.report.thumbnails import Explain

__all__ = ["OVERLAY_SIDE", "overlay_maker"]

log = logging.getLogger(__name__)

OVERLAY_SIDE = 160  # longest side of each overlay panel, pixels


def overlay_maker(settings: Any) -> tuple[Explain | None, str]:
    """The function that makes a frame's overlay, or None and why (a model that cannot be
    loaded leaves the thumbnails without overlays; the report is still written)."""
    from model.grading import Grading
    from model.saliency import Saliency

    try:
        saliency = Saliency.load(settings.weights)
    except ModelError as exc:
        log.warning("no saliency overlays: %s", exc)
        return None, f"no overlay: the model could not be loaded ({exc})"
    threshold = Grading.from_settings(settings).defect_threshold

    def explain(frame: np.ndarray) -> tuple[str | None, str]:
        try:
            return _overlay(saliency, frame, threshold)
        except ModelError as exc:
            log.warning("no saliency overlay for a scan: %s", exc)
            return None, f"no overlay: {exc}"

    return explain, ""


def _overlay(saliency: Any, frame: np.ndarray, threshold: float) -> tuple[str, str]:
    from model.defects import frame_first_defects
    from model.overlay import legend, panels, png_bytes

    result = saliency.assess([frame])
    targets = ["score"]
    if result.defects is not None:
        [first] = frame_first_defects(result.defects, threshold, result.defect_names)
        targets += [first] if first else []
    heatmaps = saliency.explain(frame, targets)
    note = f"model {saliency.version}"
    if not saliency.defect_names:
        note += " (no defect head: score only)"
    elif len(targets) == 1:
        note += " (names no defect for this frame)"
    image = panels(frame, heatmaps, "", with_frame=False, longest_side=OVERLAY_SIDE)
    uri = "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")
    return uri, legend(heatmaps, first="", note=note)

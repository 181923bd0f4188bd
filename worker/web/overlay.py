"""The saliency overlay of a scan's first frame, on request (``/scans/<id>/overlay.png``):
where the evidence for a low score and for the first defect lies (the overlays of
``usqa report --html --thumbnails``: :func:`worker.report.overlays.overlay_maker`).

The model (torch) is loaded on the first request only, so ``usqa serve`` starts fast and a
page that never asks for an overlay never loads it; once loaded it is kept for the life of
the process. One lock guards loading and every computation: the server answers from several
threads, and a saliency computation hooks into the network while it runs.
"""

from __future__ import annotations

import base64
import logging
import threading

import numpy as np

from worker.report.thumbnails import Explain
from worker.settings import Settings

__all__ = ["Overlays"]

log = logging.getLogger(__name__)


class Overlays:
    """Makes overlays with the model the settings name (USQA_WEIGHTS)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._loaded = False
        self._explain: Explain | None = None
        self._why_not = ""

    def _load(self) -> None:
        from worker.report.overlays import overlay_maker

        try:
            self._explain, self._why_not = overlay_maker(self._settings)
        except Exception as exc:  # torch missing, weights unreadable: no overlay, the page works
            log.exception("the saliency model could not be loaded")
            self._explain = None
            self._why_not = f"no overlay: the model could not be loaded ({exc})"
        self._loaded = True

    def make(self, frame: np.ndarray) -> tuple[bytes | None, str]:
        """The overlay of ``frame`` as PNG bytes and its legend, or None and why not."""
        with self._lock:
            if not self._loaded:
                self._load()
            if self._explain is None:
                return None, self._why_not
            try:
                uri, legend = self._explain(frame)
            except Exception as exc:
                log.exception("a saliency overlay failed")
                return None, f"no overlay: {exc}"
        if uri is None:
            return None, legend
        return base64.b64decode(uri.partition(",")[2]), legend

"""A scan as the worker sees it: header facts, QA metadata, the crop box and lazy frames.

Owns :class:`Scan` (what :func:`dicom_io.read` returns) and the :class:`FrameSource`
protocol its frame decoders follow; the box itself is :class:`dicom_io.cropbox.CropBox`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from dicom_io.cropbox import CropBox

__all__ = ["FrameSource", "Scan"]

log = logging.getLogger(__name__)

# How many of the selected frames the border heuristic looks at (their brightest pixels).
HEURISTIC_SAMPLE_FRAMES = 8


class FrameSource(Protocol):
    """Decodes frames of one file to display intensity (uint8 grey or RGB, full frame)."""

    def frames(self, indices: Sequence[int]) -> Iterator[tuple[int, NDArray[np.uint8]]]: ...


class Scan:
    """One DICOM or PNG/JPEG file, read header first. Frames are decoded only on demand.

    Attributes follow the interface contract: ``path``, ``kind`` (``dicom`` or ``image``),
    ``rows``, ``columns``, ``frame_count``, ``samples_per_pixel``, ``selected_frames``
    (0-based), ``skip_reason`` (set when policy says do not score), ``metadata`` (JSON-safe)
    and ``notes`` (plain-language remarks, e.g. why ultrasound regions were not used).
    """

    def __init__(
        self,
        *,
        path: Path,
        kind: Literal["dicom", "image"],
        rows: int,
        columns: int,
        frame_count: int,
        samples_per_pixel: int,
        selected_frames: list[int],
        metadata: dict[str, Any],
        source: FrameSource,
        region_crop: CropBox | None,
        crop_enabled: bool,
        skip_reason: str | None = None,
        notes: list[str] | None = None,
    ) -> None:
        self.path = path
        self.kind = kind
        self.rows = rows
        self.columns = columns
        self.frame_count = frame_count
        self.samples_per_pixel = samples_per_pixel
        self.selected_frames = selected_frames
        self.metadata = metadata
        self.skip_reason = skip_reason
        self.notes: list[str] = list(notes or [])
        self._source = source
        self._region_crop = region_crop
        self._crop_enabled = crop_enabled
        self._crop: CropBox | None = None
        self._crop_done = False
        # Frames the heuristic decoded, kept (at most HEURISTIC_SAMPLE_FRAMES) until
        # iter_frames yields them, so that no frame is decoded twice.
        self._decoded: dict[int, NDArray[np.uint8]] = {}

    def __repr__(self) -> str:
        return (
            f"Scan(path={str(self.path)!r}, kind={self.kind!r}, rows={self.rows}, "
            f"columns={self.columns}, frames={self.frame_count}, "
            f"selected={len(self.selected_frames)}, skip_reason={self.skip_reason!r})"
        )

    @property
    def crop(self) -> CropBox | None:
        """The B-mode box (None when cropping is off). Without ultrasound regions the
        heuristic decodes a few selected frames the first time this is asked for; they are
        kept until :meth:`iter_frames` yields them, so they are not decoded again."""
        if not self._crop_enabled:
            return None
        if not self._crop_done:
            self._crop = self._region_crop or self._heuristic_crop()
            self._crop_done = True
        return self._crop

    def _heuristic_crop(self) -> CropBox:
        from dicom_io.borders import find_box

        picks = self.selected_frames or [0]
        if len(picks) > HEURISTIC_SAMPLE_FRAMES:
            spots = np.linspace(0, len(picks) - 1, HEURISTIC_SAMPLE_FRAMES).round().astype(int)
            picks = [picks[i] for i in spots]
        wanted = set(self.selected_frames)

        def sample() -> Iterator[NDArray[np.uint8]]:
            for index, frame in self._source.frames(picks):
                if index in wanted:
                    self._decoded[index] = frame
                yield frame

        try:
            box, note = find_box(sample())
        except BaseException:
            self._decoded.clear()
            raise
        if note:
            self.notes.append(note)
        log.debug("%s: heuristic crop %s", self.path.name, box)
        return box

    def iter_frames(self, cropped: bool = True) -> Iterator[tuple[int, NDArray[np.uint8]]]:
        """Yield ``(index, frame)`` for the selected frames only, decoded one at a time.

        Frames are uint8 at display intensity, (H, W) grey or (H, W, 3) RGB, cut to
        :attr:`crop` unless ``cropped`` is False. Raises :class:`worker.errors.InputError`.
        """
        box = self.crop if cropped else None
        for index, frame in self._decode_selected():
            if box is None:
                yield index, frame
            else:
                yield index, np.ascontiguousarray(box.apply(frame))

    def _decode_selected(self) -> Iterator[tuple[int, NDArray[np.uint8]]]:
        """The selected frames in order: those the heuristic already decoded are handed over
        (and forgotten), the others decoded one at a time."""
        kept, self._decoded = self._decoded, {}
        rest = [i for i in self.selected_frames if i not in kept]
        if rest:
            for index, frame in self._source.frames(rest):
                while kept and min(kept) < index:
                    first = min(kept)
                    yield first, kept.pop(first)
                yield index, frame
        while kept:
            first = min(kept)
            yield first, kept.pop(first)

"""The crop box: where the B-mode image sits in a frame, in full-frame pixels.

Owns :class:`CropBox` and its ``source`` vocabulary. The ultrasound regions
(:mod:`dicom_io.regions`) and the border heuristic (:mod:`dicom_io.borders`) produce one;
:class:`dicom_io.Scan` holds it and cuts frames with it. Imports nothing of usqa.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

__all__ = ["CropBox", "CropSource"]

CropSource = Literal["regions", "heuristic", "none"]


@dataclass(frozen=True, slots=True)
class CropBox:
    """A box in full-frame pixels, max inclusive like DICOM ultrasound regions.

    ``source`` says how it was found: ``regions`` (the Sequence of Ultrasound Regions),
    ``heuristic`` (uniform borders and annotation bars removed) or ``none`` (whole frame).
    """

    x0: int
    y0: int
    x1: int
    y1: int
    source: CropSource

    @property
    def width(self) -> int:
        return self.x1 - self.x0 + 1

    @property
    def height(self) -> int:
        return self.y1 - self.y0 + 1

    @classmethod
    def full(cls, rows: int, columns: int) -> CropBox:
        """The whole frame, ``source="none"``."""
        return cls(0, 0, columns - 1, rows - 1, "none")

    def apply(self, frame: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """The part of ``frame`` inside the box (a view, not a copy)."""
        return frame[self.y0 : self.y1 + 1, self.x0 : self.x1 + 1]

    def as_dict(self) -> dict[str, Any]:
        return {"x0": self.x0, "y0": self.y0, "x1": self.x1, "y1": self.y1, "source": self.source}

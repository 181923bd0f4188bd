"""Decoded DICOM pixels to display intensity: uint8 grey (H, W) or RGB (H, W, 3).

pydicom already turns YBR_FULL / YBR_FULL_422 into RGB and the JPEG 2000 codec undoes
YBR_RCT / YBR_ICT, so colour frames arrive as RGB. What is left, frame by frame:

* PALETTE COLOR: the palette is expanded once into a 256- or 65536-entry RGB table; 16-bit
  palette entries are divided by 257 (a palette declared 16-bit whose entries never exceed
  255 is taken as 8-bit, a known exporter slip).
* RGB with more than 8 bits stored: scaled linearly from ``0 .. 2**BitsStored - 1``.
* MONOCHROME1/2: the modality LUT (Rescale Slope/Intercept or a Modality LUT Sequence),
  then the first VOI LUT or window (Window Center/Width with VOI LUT Function LINEAR,
  LINEAR_EXACT or SIGMOID, PS3.3 C.11.2.1.2) mapped to 0..255. Without a VOI, unsigned data
  of up to 8 bits stored is scaled from ``0 .. 2**BitsStored - 1`` (identity for 8 bits);
  anything else (16-bit, signed) is stretched per frame from its minimum to its maximum.
  MONOCHROME1 is inverted last, so bright always means strong echo.

Work is done on one frame at a time in float32, never on the whole cine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Display"]


def _to_uint8(values: NDArray[Any]) -> NDArray[np.uint8]:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _first_number(value: Any) -> float | None:
    """The first value of a (possibly multi-valued) DS/IS element as a finite float."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        value = value[0] if len(value) else None
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class Display:
    """Maps decoded frames of one DICOM header to display intensity."""

    def __init__(self, header: Any, photometric: str, bits_stored: int, signed: bool) -> None:
        self.header = header
        self.photometric = photometric
        self.bits_stored = bits_stored
        self.signed = signed
        self._palette: NDArray[np.uint8] | None = None
        slope = _first_number(header.get("RescaleSlope"))
        intercept = _first_number(header.get("RescaleIntercept"))
        self._modality_lut = bool(header.get("ModalityLUTSequence"))
        self._rescale = (
            (slope, intercept)
            if slope is not None
            and intercept is not None
            and (slope != 1.0 or intercept != 0.0)
            and not self._modality_lut
            else None
        )
        self._voi_lut = bool(header.get("VOILUTSequence"))
        center = _first_number(header.get("WindowCenter"))
        width = _first_number(header.get("WindowWidth"))
        function = str(header.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
        valid = (
            center is not None
            and width is not None
            and (width >= 1 if function == "LINEAR" else width > 0)
        )
        self._window = (center, width, function) if valid else None

    def __call__(self, arr: NDArray[Any]) -> NDArray[np.uint8]:
        if self.photometric == "PALETTE COLOR":
            return self._palette_colour(arr)
        if arr.ndim == 3:
            return self._colour(arr)
        grey = self._monochrome(arr)
        if self.photometric == "MONOCHROME1":
            grey = 255 - grey
        return grey

    def _colour(self, arr: NDArray[Any]) -> NDArray[np.uint8]:
        if arr.dtype == np.uint8:
            return np.ascontiguousarray(arr)
        top = float(2 ** max(self.bits_stored, 1) - 1)
        return _to_uint8(arr.astype(np.float32) * np.float32(255.0 / top))

    def _palette_table(self) -> NDArray[np.uint8]:
        """The palette for every possible stored value, computed once per scan."""
        from pydicom.pixels import apply_color_lut

        if self._palette is None:
            size = 256 if self.bits_stored <= 8 else 65536
            dtype = np.uint8 if size == 256 else np.uint16
            table = apply_color_lut(np.arange(size, dtype=dtype), self.header)[..., :3]
            if table.dtype != np.uint8 and int(table.max()) > 255:
                table = np.rint(table / 257.0)
            self._palette = table.astype(np.uint8)
        return self._palette

    def _palette_colour(self, arr: NDArray[Any]) -> NDArray[np.uint8]:
        table = self._palette_table()
        index = np.clip(arr.astype(np.int64), 0, len(table) - 1)
        return table[index]

    def _monochrome(self, arr: NDArray[Any]) -> NDArray[np.uint8]:
        plain = not (self._rescale or self._modality_lut or self._voi_lut or self._window)
        if plain and not self.signed and self.bits_stored <= 8:
            if self.bits_stored == 8 and arr.dtype == np.uint8:
                return np.ascontiguousarray(arr)
            top = float(2 ** max(self.bits_stored, 1) - 1)
            return _to_uint8(arr.astype(np.float32) * np.float32(255.0 / top))
        values: NDArray[Any]
        if self._modality_lut:
            from pydicom.pixels import apply_modality_lut

            values = apply_modality_lut(arr, self.header)
        elif self._rescale:
            slope, intercept = self._rescale
            values = arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)
        else:
            values = arr
        if self._voi_lut:
            return self._apply_voi_lut(values)
        if self._window:
            return self._apply_window(values.astype(np.float32))
        return self._stretch(values.astype(np.float32))

    def _apply_voi_lut(self, values: NDArray[Any]) -> NDArray[np.uint8]:
        from pydicom.pixels import apply_voi

        depth = int(self.header.VOILUTSequence[0].LUTDescriptor[2])
        mapped = apply_voi(np.rint(values).astype(np.int64), self.header, index=0)
        return _to_uint8(mapped.astype(np.float32) * np.float32(255.0 / (2**depth - 1)))

    def _apply_window(self, values: NDArray[np.float32]) -> NDArray[np.uint8]:
        assert self._window is not None
        center, width, function = self._window
        assert center is not None and width is not None
        if function == "SIGMOID":
            out = 255.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
        elif function == "LINEAR_EXACT":
            out = ((values - center) / width + 0.5) * 255.0
        else:  # LINEAR, PS3.3 C.11.2.1.2.1
            out = (
                ((values - (center - 0.5)) / (width - 1.0) + 0.5) * 255.0
                if width > 1
                else (np.where(values > center - 0.5, 255.0, 0.0))
            )
        return _to_uint8(out)

    @staticmethod
    def _stretch(values: NDArray[np.float32]) -> NDArray[np.uint8]:
        low, high = float(values.min()), float(values.max())
        if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
            return np.zeros(values.shape, dtype=np.uint8)
        return _to_uint8((values - np.float32(low)) * np.float32(255.0 / (high - low)))

"""The B-mode box from the DICOM Sequence of Ultrasound Regions (0018,6011).

Each region item says where one part of the screen is (RegionLocationMinX0/MinY0/MaxX1/
MaxY1, max inclusive) and what it shows: RegionSpatialFormat (1 = 2D, 2 = M-mode,
3 = spectral Doppler, 4 = waveform, 5 = graphics) and RegionDataType (1 = tissue,
2 = colour flow, 3/4 = PW/CW spectral Doppler, 10+ = ECG and other traces, 13/14 = grey or
colour bars). The B-mode image is a 2D tissue region; a 2D colour-flow region (tissue with a
colour overlay) is used when there is no plain tissue one. With several, the largest wins.

Every region is checked against the frame before use: the four corners must be whole
numbers, in order and inside ``rows x columns`` (a maximum equal to the frame size, an
off-by-one some exporters write, is clipped). A region that does not fit means the pixels
were resized or cut after the scanner wrote the regions; it is not used, and the caller
falls back to the border heuristic with a note saying why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dicom_io.cropbox import CropBox

__all__ = ["Region", "bmode_box", "parse_regions"]

SPATIAL_2D = 1
TISSUE = 1
COLOUR_FLOW = 2
MIN_SIDE = 8

_SPATIAL_NAMES = {
    0: "no spatial format",
    1: "2D",
    2: "M-mode",
    3: "spectral Doppler",
    4: "waveform",
    5: "graphics",
}


@dataclass(frozen=True, slots=True)
class Region:
    """One item of the Sequence of Ultrasound Regions (1-based ``number``)."""

    number: int
    spatial_format: int | None
    data_type: int | None
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def is_bmode(self) -> bool:
        return self.spatial_format == SPATIAL_2D and self.data_type in (TISSUE, COLOUR_FLOW)

    @property
    def label(self) -> str:
        if self.is_bmode:
            kind = "B-mode" if self.data_type == TISSUE else "colour-flow 2D"
        else:
            kind = _SPATIAL_NAMES.get(self.spatial_format or 0, "unknown")
        return f"region {self.number} ({kind}, x {self.x0}-{self.x1}, y {self.y0}-{self.y1})"

    @property
    def area(self) -> int:
        return (self.x1 - self.x0 + 1) * (self.y1 - self.y0 + 1)


def _int(item: Any, keyword: str) -> int | None:
    value = item.get(keyword)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def parse_regions(ds: Any) -> tuple[list[Region], list[str]]:
    """The regions of a header dataset with whole-number corners, and notes on the others."""
    sequence = ds.get("SequenceOfUltrasoundRegions")
    regions: list[Region] = []
    notes: list[str] = []
    if not sequence:
        return regions, notes
    for number, item in enumerate(sequence, start=1):
        corners = [
            _int(item, k)
            for k in (
                "RegionLocationMinX0",
                "RegionLocationMinY0",
                "RegionLocationMaxX1",
                "RegionLocationMaxY1",
            )
        ]
        if any(c is None for c in corners):
            notes.append(f"ultrasound region {number} has no usable corner coordinates; ignored")
            continue
        x0, y0, x1, y1 = (int(c) for c in corners)  # type: ignore[arg-type]
        regions.append(
            Region(
                number,
                _int(item, "RegionSpatialFormat"),
                _int(item, "RegionDataType"),
                x0,
                y0,
                x1,
                y1,
            )
        )
    return regions, notes


def _fit(region: Region, rows: int, columns: int) -> CropBox | None:
    """The region as a box inside the frame, or None when it does not fit."""
    x0, y0, x1, y1 = region.x0, region.y0, region.x1, region.y1
    if min(x0, y0) < 0 or x0 > x1 or y0 > y1:
        return None
    if x1 > columns or y1 > rows:  # one past the edge is a common off-by-one: clip that
        return None
    x1, y1 = min(x1, columns - 1), min(y1, rows - 1)
    if x1 - x0 + 1 < MIN_SIDE or y1 - y0 + 1 < MIN_SIDE:
        return None
    return CropBox(x0, y0, x1, y1, "regions")


def bmode_box(ds: Any, rows: int, columns: int) -> tuple[CropBox | None, list[str]]:
    """The B-mode box from the regions of ``ds`` for a ``rows x columns`` frame, or None
    (no regions, no B-mode region, or none that fits), with notes explaining a None."""
    regions, notes = parse_regions(ds)
    if not regions:
        return None, notes
    candidates = [r for r in regions if r.is_bmode]
    if not candidates:
        kinds = ", ".join(r.label for r in regions)
        notes.append(f"the ultrasound regions hold no 2D B-mode image ({kinds})")
        return None, notes
    tissue = [r for r in candidates if r.data_type == TISSUE]
    fitting: list[tuple[Region, CropBox]] = []
    for region in tissue or candidates:
        box = _fit(region, rows, columns)
        if box is None:
            notes.append(
                f"ultrasound {region.label} does not fit the {columns} x {rows} frame "
                "(the image was probably resized or cut after the scanner wrote it); not used"
            )
        else:
            fitting.append((region, box))
    if not fitting:
        return None, notes
    _, best = max(fitting, key=lambda pair: pair[0].area)
    return best, notes

"""The header of a scan as a plain record: what crosses the decoder pipe (as JSON) and what
the ledger's columns are filled from, in one form from :class:`dicom_io.Scan` to the row."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dicom_io.scan import Scan

__all__ = ["ScanHeader"]


@dataclass
class ScanHeader:
    """What the header of one file says (the :class:`dicom_io.Scan` attributes), JSON-safe."""

    kind: str
    rows: int
    columns: int
    frame_count: int
    samples_per_pixel: int
    selected_frames: list[int]
    skip_reason: str | None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, scan: Scan) -> ScanHeader:
        return cls(
            kind=scan.kind,
            rows=scan.rows,
            columns=scan.columns,
            frame_count=scan.frame_count,
            samples_per_pixel=scan.samples_per_pixel,
            selected_frames=list(scan.selected_frames),
            skip_reason=scan.skip_reason,
            metadata=scan.metadata,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScanHeader:
        """The record from :meth:`to_dict`'s form; keys it does not know are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["metadata"] = dict(values.get("metadata") or {})
        values["selected_frames"] = list(values.get("selected_frames") or [])
        return cls(**values)

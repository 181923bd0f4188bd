"""The scan header as ``scans`` columns: which dicom_io metadata keys are stored, how a
value is trimmed to its column, and setting them on the scans a worker holds."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, update
from sqlalchemy.orm import Session

from db.models import Scan
from dicom_io.metadata import METADATA_KEYS

__all__ = ["METADATA_COLUMNS", "metadata_columns", "update_columns"]

# dicom_io's metadata keys that are columns of ``scans`` (same names; the header's rows,
# columns and frames are written from the header itself)
METADATA_COLUMNS = tuple(
    key
    for key in METADATA_KEYS
    if key in Scan.__table__.columns and key not in {"rows", "columns", "frames"}
)
_DATETIMES = {"study_datetime", "acquisition_datetime"}

_SCANS = cast(Table, Scan.__table__)  # Core statements: executemany without ORM overhead


def _text(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        value = "\\".join(str(v) for v in value)
    text = str(value).strip()
    return text[:limit] if text else None


def _datetime(value: Any) -> datetime | None:
    """Scanner-local wall-clock time (an offset, if given, is dropped, not applied)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    try:
        return datetime.fromisoformat(str(value)).replace(tzinfo=None)
    except ValueError:
        return None


def metadata_columns(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The ``scans`` column values for a dicom_io ``Scan.metadata`` dict (unknown keys are
    ignored; values are trimmed to the column sizes; unparsable dates become None)."""
    out: dict[str, Any] = {}
    for key in METADATA_COLUMNS:
        value = metadata.get(key)
        if key in _DATETIMES:
            out[key] = _datetime(value)
        elif key == "frame_time_ms":
            try:
                number = float(value) if value is not None else None
            except (TypeError, ValueError):
                number = None
            out[key] = number if number is not None and math.isfinite(number) else None
        elif key == "burned_in_annotation":
            if isinstance(value, bool):
                out[key] = "YES" if value else "NO"
            else:
                out[key] = _text(value, 8)
        else:
            column = Scan.__table__.c[key]
            out[key] = _text(value, getattr(column.type, "length", None) or 255)
    return out


def update_columns(
    session: Session, token: str, changes: Sequence[tuple[int, Mapping[str, Any]]]
) -> None:
    """Set header columns (``{column: value}`` per scan id) on the scans this worker holds,
    one executemany statement per set of column names. The status does not change (that
    is :mod:`db.ledger.transitions`' part)."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for scan_id, columns in changes:
        if columns:
            names = tuple(sorted(columns))
            groups.setdefault(names, []).append(
                {"b_id": scan_id, "b_token": token, **{f"v_{k}": columns[k] for k in names}}
            )
    table = _SCANS
    for names, rows in groups.items():
        session.execute(
            update(table)
            .where(table.c.id == bindparam("b_id"), table.c.claim_token == bindparam("b_token"))
            .values({name: bindparam(f"v_{name}") for name in names}),
            rows,
        )

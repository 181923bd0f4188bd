"""QA metadata from a DICOM header or a PNG/JPEG sidecar, with pseudonymisation.

The patient's name is never read. The patient id and the operator's name are replaced by
keyed HMAC-SHA256 pseudonyms when a salt is configured (``USQA_PSEUDONYM_SALT``) and left
out (None) when it is not. The same salt gives the same pseudonym on every machine, so QA
can follow one operator or patient without learning who they are.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import re
import stat
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

from dicom_io.messages import first_line, shown
from worker.errors import CorruptFileError, LimitExceededError, UnreadableFileError

__all__ = [
    "IDENTIFIERS",
    "METADATA_KEYS",
    "dicom_metadata",
    "empty_metadata",
    "pseudonym",
    "pseudonymise",
    "read_sidecar",
    "sidecar_metadata",
]

METADATA_KEYS = (
    "sop_instance_uid",
    "study_instance_uid",
    "series_instance_uid",
    "sop_class_uid",
    "modality",
    "manufacturer",
    "model_name",
    "station_name",
    "device_serial_number",
    "software_versions",
    "transducer",
    "institution",
    "operator",
    "body_part",
    "study_datetime",
    "acquisition_datetime",
    "patient_id_hash",
    "rows",
    "columns",
    "frames",
    "frame_time_ms",
    "photometric",
    "transfer_syntax",
    "transfer_syntax_name",
    "burned_in_annotation",
)

# Sidecar keys that are copied as text; the rest are derived (hash, pseudonym, numbers).
_DERIVED_KEYS = {
    "operator",
    "study_datetime",
    "acquisition_datetime",
    "patient_id_hash",
    "rows",
    "columns",
    "frames",
    "frame_time_ms",
    "photometric",
    "transfer_syntax",
    "transfer_syntax_name",
    "burned_in_annotation",
}
_TEXT_KEYS = tuple(k for k in METADATA_KEYS if k not in _DERIVED_KEYS)
MAX_TEXT = 256
MAX_SIDECAR_BYTES = 1 << 20
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def empty_metadata() -> dict[str, Any]:
    """Every metadata key, all None."""
    return dict.fromkeys(METADATA_KEYS)


def pseudonym(salt: str | None, role: str, value: str | None) -> str | None:
    """HMAC-SHA256 of ``value`` keyed by ``salt``, separated by ``role`` (so a patient id
    and an operator name that happen to be equal get different pseudonyms). None without a
    salt or a value. Patient ids give the full 64 hex digits, others ``op-`` + 16."""
    if not salt or value is None:
        return None
    text = " ".join(str(value).split())
    if not text:
        return None
    digest = hmac.new(
        salt.encode("utf-8"), f"{role}\x00{text}".encode(), hashlib.sha256
    ).hexdigest()
    return digest if role == "patient_id" else f"op-{digest[:16]}"


IDENTIFIERS = "identifiers"  # raw operator name and patient id, kept for the caller


def _identify(
    meta: dict[str, Any], salt: str | None, keep: bool, operator: Any, patient_id: Any
) -> None:
    """Pseudonymise the operator name and patient id into ``meta``; with ``keep``, leave
    both None and hand the clean texts to the caller under :data:`IDENTIFIERS` (a process
    that must not hold the salt: the decoder child), for :func:`pseudonymise`."""
    if keep:
        meta[IDENTIFIERS] = {"operator": operator, "patient_id": patient_id}
        return
    meta["operator"] = pseudonym(salt, "operator", operator)
    meta["patient_id_hash"] = pseudonym(salt, "patient_id", patient_id)


def pseudonymise(meta: dict[str, Any] | None, salt: str | None) -> dict[str, Any]:
    """Metadata read with ``keep_identifiers``, with the pseudonyms in place of the raw
    identifiers (the same values a read with the salt gives). The two pseudonym fields are
    always set here, from text values only: whatever the reader put there is not kept."""
    out = dict(meta or {})
    raw = out.pop(IDENTIFIERS, None)
    raw = raw if isinstance(raw, dict) else {}
    texts = {k: v if isinstance(v, str) else None for k, v in raw.items()}
    out["operator"] = pseudonym(salt, "operator", texts.get("operator"))
    out["patient_id_hash"] = pseudonym(salt, "patient_id", texts.get("patient_id"))
    return out


def _text(value: Any) -> str | None:
    """A DICOM value as one clean line of text; multi-values joined with ' / '."""
    if value is None:
        return None
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        parts = [_text(v) for v in value]
        kept = [p for p in parts if p and p.upper() != "UNUSED"]
        return " / ".join(kept)[:MAX_TEXT] or None
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace")
    text = _CONTROL.sub(" ", str(value)).strip()
    return text[:MAX_TEXT] or None


def _get(ds: Any, keyword: str) -> Any:
    try:
        return ds.get(keyword)
    except Exception:  # a malformed element: treat as absent rather than fail the scan
        return None


def _date(value: Any) -> date | None:
    text = (_text(value) or "").replace(".", "").replace("-", "").replace("/", "")
    if len(text) < 8 or not text[:8].isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def _time(value: Any) -> time | None:
    text = (_text(value) or "").replace(":", "")
    match = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?", text)
    if not match:
        return None
    hour, minute, second, fraction = match.groups()
    try:
        return time(
            int(hour),
            int(minute or 0),
            min(int(second or 0), 59),
            int((fraction or "0").ljust(6, "0")),
        )
    except ValueError:
        return None


def _datetime(value: Any) -> str | None:
    """A DICOM DT (YYYYMMDDHHMMSS.FFFFFF&ZZXX) as ISO 8601."""
    text = _text(value) or ""
    match = re.fullmatch(r"(\d{8})(\d{2,6}(?:\.\d{1,6})?)?([+-]\d{4})?", text)
    if not match:
        return None
    day = _date(match.group(1))
    if day is None:
        return None
    clock = _time(match.group(2)) if match.group(2) else time()
    if clock is None:
        return None
    stamp = datetime.combine(day, clock)
    if match.group(3):
        sign = 1 if match.group(3)[0] == "+" else -1
        hours, minutes = int(match.group(3)[1:3]), int(match.group(3)[3:5])
        try:
            stamp = stamp.replace(tzinfo=timezone(sign * timedelta(hours=hours, minutes=minutes)))
        except ValueError:
            return None
    return stamp.isoformat()


def _date_time(day_value: Any, time_value: Any) -> str | None:
    day = _date(day_value)
    if day is None:
        return None
    clock = _time(time_value) if time_value else None
    return datetime.combine(day, clock or time()).isoformat() if clock else day.isoformat()


def _frame_time_ms(ds: Any) -> float | None:
    for keyword, to_ms in (
        ("FrameTime", 1.0),
        ("CineRate", None),
        ("RecommendedDisplayFrameRate", None),
    ):
        value = _get(ds, keyword)
        try:
            number = float(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            number = None
        if number is None or not number > 0 or number == float("inf"):
            continue
        return round(number if to_ms else 1000.0 / number, 3)
    return None


def _burned_in(value: Any) -> bool | None:
    text = (_text(value) or "").upper()
    return True if text == "YES" else False if text == "NO" else None


def dicom_metadata(ds: Any, salt: str | None, keep_identifiers: bool = False) -> dict[str, Any]:
    """QA metadata from a header dataset (read with ``stop_before_pixels``); see
    :func:`_identify` for ``keep_identifiers``."""
    meta = empty_metadata()
    file_meta = getattr(ds, "file_meta", None)
    for key, keyword in (
        ("sop_instance_uid", "SOPInstanceUID"),
        ("study_instance_uid", "StudyInstanceUID"),
        ("series_instance_uid", "SeriesInstanceUID"),
        ("sop_class_uid", "SOPClassUID"),
        ("manufacturer", "Manufacturer"),
        ("model_name", "ManufacturerModelName"),
        ("station_name", "StationName"),
        ("device_serial_number", "DeviceSerialNumber"),
        ("software_versions", "SoftwareVersions"),
        ("transducer", "TransducerData"),
        ("institution", "InstitutionName"),
        ("body_part", "BodyPartExamined"),
        ("photometric", "PhotometricInterpretation"),
    ):
        meta[key] = _text(_get(ds, keyword))
    if meta["sop_class_uid"] is None and file_meta is not None:
        meta["sop_class_uid"] = _text(_get(file_meta, "MediaStorageSOPClassUID"))
    if meta["transducer"] is None:
        meta["transducer"] = _text(_get(ds, "TransducerType"))
    modality = _text(_get(ds, "Modality"))
    meta["modality"] = modality.upper() if modality else None
    operator, patient_id = _text(_get(ds, "OperatorsName")), _text(_get(ds, "PatientID"))
    _identify(meta, salt, keep_identifiers, operator, patient_id)
    meta["study_datetime"] = _date_time(_get(ds, "StudyDate"), _get(ds, "StudyTime"))
    meta["acquisition_datetime"] = _datetime(_get(ds, "AcquisitionDateTime")) or _date_time(
        _get(ds, "AcquisitionDate"), _get(ds, "AcquisitionTime")
    )
    meta["frame_time_ms"] = _frame_time_ms(ds)
    meta["burned_in_annotation"] = _burned_in(_get(ds, "BurnedInAnnotation"))
    return meta


def read_sidecar(image_path: Path) -> dict[str, Any] | None:
    """The JSON object in ``<image>.json`` beside an image (``scan.png.json``), or None.

    The sidecar gets the checks the image gets: it must be a regular file with one link
    (never a symbolic link, a FIFO, a device or a hard link that may lead out of the drop
    folder), and at most 1 MiB is read, whatever it claims to hold."""
    sidecar = image_path.with_name(image_path.name + ".json")
    name = shown(sidecar)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(sidecar, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnreadableFileError(
                f"{name}: the metadata sidecar is a symbolic link; only a regular file beside "
                "the image is read (replace the link with the file)"
            ) from exc
        raise UnreadableFileError(
            f"{name}: cannot read the metadata sidecar ({first_line(exc)})"
        ) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnreadableFileError(
                f"{name}: the metadata sidecar is {_file_kind(st.st_mode)}, not a regular "
                "file; it is not read"
            )
        if st.st_nlink > 1:
            raise UnreadableFileError(
                f"{name}: the metadata sidecar has {st.st_nlink} hard links and may be a file "
                "outside the drop folder; copy it in instead"
            )
        if st.st_size > MAX_SIDECAR_BYTES:
            raise LimitExceededError(
                f"{name}: metadata sidecar is {st.st_size} bytes, more than the 1 MiB allowed; "
                "keep only the QA fields in it"
            )
        raw = _read_at_most(fd, MAX_SIDECAR_BYTES + 1)
    except OSError as exc:
        raise UnreadableFileError(
            f"{name}: cannot read the metadata sidecar ({first_line(exc)})"
        ) from exc
    finally:
        os.close(fd)
    if len(raw) > MAX_SIDECAR_BYTES:
        raise LimitExceededError(
            f"{name}: metadata sidecar grew past the 1 MiB allowed while it was read"
        )
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptFileError(
            f"{name}: metadata sidecar is not valid UTF-8 JSON ({first_line(exc)}); "
            "fix or remove it"
        ) from exc
    if not isinstance(data, dict):
        raise CorruptFileError(
            f"{name}: metadata sidecar must hold one JSON object, found {type(data).__name__}"
        )
    return data


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def sidecar_metadata(
    data: dict[str, Any] | None, salt: str | None, keep_identifiers: bool = False
) -> dict[str, Any]:
    """Metadata from a sidecar object. Keys are the metadata keys; ``patient_id`` and
    ``operator`` are given in clear and pseudonymised here (or kept: :func:`_identify`);
    ``patient_name`` is ignored."""
    meta = empty_metadata()
    if not data:
        _identify(meta, salt, keep_identifiers, None, None)
        return meta
    for key in _TEXT_KEYS:
        value = data.get(key)
        meta[key] = _text(value) if isinstance(value, str | int | float) else None
    if meta["modality"]:
        meta["modality"] = meta["modality"].upper()
    texts = {}
    for key in ("operator", "patient_id"):
        value = data.get(key)
        texts[key] = _text(value) if isinstance(value, str | int) else None
    _identify(meta, salt, keep_identifiers, texts["operator"], texts["patient_id"])
    for key in ("study_datetime", "acquisition_datetime"):
        value = data.get(key)
        meta[key] = _iso(value) if isinstance(value, str) else None
    value = data.get("frame_time_ms")
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        meta["frame_time_ms"] = float(value)
    value = data.get("burned_in_annotation")
    meta["burned_in_annotation"] = value if isinstance(value, bool) else None
    return meta


def _iso(text: str) -> str | None:
    """An ISO 8601 date or date-time from a sidecar, normalised; None if unparseable."""
    try:
        return datetime.fromisoformat(text.strip()).isoformat()
    except ValueError:
        return None

"""Reading a DICOM file header first and checking it before any pixel is decoded.

Order of checks (each failure is one :class:`worker.errors.InputError` naming the file):
header parses; there is pixel data; the transfer syntax can be decoded here; the image
attributes make sense; the size is within the budget (``max_frames``, ``max_pixels``,
``max_samples``); the pixel data is as long as the header says (native) or its fragments
are complete (compressed). Only then are regions, metadata and the modality policy read.

Owns these checks, the image attributes and the modality policy; the bytes around the pixel
data (element header, fragments, native length, inflating) are :mod:`dicom_io.pixeldata`'s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from dicom_io.display import Display
from dicom_io.frames import DicomFrames, select_frames
from dicom_io.messages import (
    OUT_OF_MEMORY,
    first_line,
    quiet_warnings,
    shown,
    stalled,
    storage_unavailable,
)
from dicom_io.metadata import dicom_metadata
from dicom_io.options import ReadOptions
from dicom_io.pixeldata import (
    DEFLATED,
    FLOAT_PIXEL_DATA,
    PIXEL_DATA,
    check_pixel_data,
    has_preamble,
    inflate,
    pixel_element,
)
from dicom_io.regions import bmode_box
from dicom_io.scan import Scan
from worker.errors import (
    CorruptFileError,
    InputError,
    LimitExceededError,
    NoPixelDataError,
    UnsupportedFileError,
)

__all__ = ["read_dicom"]

log = logging.getLogger(__name__)

SUPPORTED_PHOTOMETRIC = {
    "MONOCHROME1": 1,
    "MONOCHROME2": 1,
    "PALETTE COLOR": 1,
    "RGB": 3,
    "YBR_FULL": 3,
    "YBR_FULL_422": 3,
    "YBR_RCT": 3,
    "YBR_ICT": 3,
}
ULTRASOUND_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image Storage
    "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame Image Storage
    "1.2.840.10008.5.1.4.1.1.6",  # retired
    "1.2.840.10008.5.1.4.1.1.3",  # retired
}


def _uid_name(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name
    return name if name and name != uid else uid


def _transfer_syntax(ds: Any, name: str) -> tuple[str, bool, bool]:
    """(UID, implicit VR, little endian) of the dataset; raises if unknown."""
    from pydicom.uid import UID

    meta = getattr(ds, "file_meta", None)
    value = meta.get("TransferSyntaxUID") if meta is not None else None
    if not value:
        encoding: tuple[bool | None, bool | None] = getattr(ds, "original_encoding", (None, None))
        implicit, little = encoding
        if implicit is None or little is None:
            raise CorruptFileError(f"{name}: the transfer syntax cannot be determined")
        if implicit:
            return "1.2.840.10008.1.2", True, True
        return (
            ("1.2.840.10008.1.2.1", False, True)
            if little
            else ("1.2.840.10008.1.2.2", False, False)
        )
    uid = UID(str(value).strip().rstrip("\x00"))
    if not uid.is_valid or not uid.is_transfer_syntax:
        raise UnsupportedFileError(
            f"{name}: transfer syntax {shown(uid)[:80]} is not one usqa knows; export the scan "
            "uncompressed or as JPEG, JPEG-LS, JPEG 2000 or RLE"
        )
    return str(uid), bool(uid.is_implicit_VR), bool(uid.is_little_endian)


def _check_decoder(uid: str, name: str) -> None:
    from pydicom.pixels import get_decoder

    label = shown(f"{_uid_name(uid)} ({uid})")
    try:
        decoder = get_decoder(uid)
    except NotImplementedError as exc:
        raise UnsupportedFileError(
            f"{name}: transfer syntax {label} cannot be decoded by usqa; export the scan "
            "uncompressed or as JPEG, JPEG-LS, JPEG 2000 or RLE"
        ) from exc
    if not decoder.is_available:
        missing = "; ".join(str(m) for m in decoder.missing_dependencies)
        raise UnsupportedFileError(
            f"{name}: transfer syntax {label} needs a decoder that is not installed ({missing}); "
            "install the usqa dependencies (pip install usqa)"
        )


def _int_attr(ds: Any, keyword: str, name: str, default: int | None = None) -> int:
    try:
        value = ds.get(keyword)
    except Exception as exc:
        raise CorruptFileError(f"{name}: {keyword} cannot be read ({first_line(exc)})") from exc
    if value is None or value == "":
        if default is None:
            raise CorruptFileError(f"{name}: the header has no {keyword}; it is not a valid image")
        return default
    try:
        if isinstance(value, bytes):
            raise ValueError(value)
        number = int(str(value).strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError) as exc:
        raise CorruptFileError(
            f"{name}: {keyword} is {str(value)[:40]!r}, expected a whole number"
        ) from exc
    return number


def _skip_reason(meta: dict[str, Any], opts: ReadOptions) -> str | None:
    modality = meta.get("modality")
    if not modality and meta.get("sop_class_uid") in ULTRASOUND_SOP_CLASSES:
        modality = "US"
    if modality in opts.modalities:
        return None
    allowed = ", ".join(opts.modalities) or "none"
    if not modality:
        return f"no modality recorded and not an ultrasound SOP class (scored: {allowed})"
    return (
        f"modality {modality} is not scored (scored: {allowed}; change USQA_MODALITIES "
        "to include it)"
    )


def _check_limits(
    rows: int, columns: int, frames: int, samples: int, opts: ReadOptions, name: str
) -> None:
    if frames > opts.max_frames:
        raise LimitExceededError(
            f"{name}: {frames} frames exceeds the {opts.max_frames} frame limit "
            "(USQA_MAX_FRAMES); refused before decoding"
        )
    pixels = rows * columns
    if pixels > opts.max_pixels:
        raise LimitExceededError(
            f"{name}: Rows x Columns = {rows} x {columns} = {pixels / 1e6:g} megapixels exceeds "
            f"the {opts.max_pixels / 1e6:g} megapixel limit (USQA_MAX_PIXELS); refused before "
            "decoding"
        )
    total = pixels * frames * samples
    if total > opts.max_samples:
        raise LimitExceededError(
            f"{name}: Rows x Columns x Frames x Samples = {rows} x {columns} x {frames} x "
            f"{samples} = {total / 1e6:g} million samples exceeds the "
            f"{opts.max_samples / 1e6:g} million limit (USQA_MAX_SAMPLES); refused before decoding"
        )


def read_dicom(path: Path, opts: ReadOptions) -> Scan:
    """Read a DICOM file header first; see the module docstring for the checks."""
    name = shown(path)
    try:
        with path.open("rb") as f, quiet_warnings(name):
            return _read(path, f, opts, name)
    except InputError:
        raise
    except MemoryError as exc:
        raise LimitExceededError(f"{name}: the DICOM header {OUT_OF_MEMORY}") from exc
    except OSError as exc:
        if stalled(exc):
            raise storage_unavailable(name, exc) from exc
        raise CorruptFileError(f"{name}: cannot be read ({first_line(exc)})") from exc
    except Exception as exc:  # pydicom raises many kinds on damaged headers
        raise CorruptFileError(
            f"{name}: the DICOM header cannot be read ({first_line(exc)}); the file is damaged "
            "or not DICOM"
        ) from exc


@dataclass(frozen=True, slots=True)
class _OpenedHeader:
    """The header dataset of one file and the stream its pixel data is read from (the
    inflated dataset when the file is deflated)."""

    ds: Any
    source: BinaryIO
    size: int
    deflated: bool


@dataclass(frozen=True, slots=True)
class _ImageAttributes:
    """The image attributes of the header, checked (:func:`_image_attributes`)."""

    rows: int
    columns: int
    samples: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    frames: int
    photometric: str

    @property
    def values(self) -> int:
        """Samples in all the frames: Rows x Columns x Frames x Samples."""
        return self.rows * self.columns * self.frames * self.samples


def _read(path: Path, f: BinaryIO, opts: ReadOptions, name: str) -> Scan:
    """The checks of the module docstring, in order, then the scan."""
    from pydicom.uid import UID

    opened = _open_header(path, f, name)
    uid, implicit, little = _transfer_syntax(opened.ds, name)
    length, offset = _find_pixel_data(opened, implicit, little, name)
    _check_decoder(uid, name)
    image = _image_attributes(opened.ds, name)
    _check_limits(image.rows, image.columns, image.frames, image.samples, opts, name)
    check_pixel_data(
        opened.source,
        encapsulated=UID(uid).is_encapsulated,
        syntax_name=_uid_name(uid),
        length=length,
        offset=offset,
        size=opened.size,
        frames=image.frames,
        values=image.values,
        bits_allocated=image.bits_allocated,
        photometric=image.photometric,
        name=name,
    )
    return _scan(path, opened, uid, image, opts)


def _open_header(path: Path, f: BinaryIO, name: str) -> _OpenedHeader:
    """The header up to the pixel data, with ``f`` (or the inflated stream) left at it."""
    from pydicom import dcmread
    from pydicom.filereader import read_file_meta_info

    size = path.stat().st_size
    preamble = has_preamble(f)
    deflated = False
    if preamble:
        file_meta = read_file_meta_info(path)
        syntax = str(file_meta.get("TransferSyntaxUID", "")).strip().rstrip("\x00")
        deflated = syntax == DEFLATED
    if deflated:
        ds, stream = inflate(path, f, name)
        return _OpenedHeader(ds, stream, len(stream.getbuffer()), deflated=True)
    ds = dcmread(f, stop_before_pixels=True, force=not preamble, defer_size="1 MB")
    return _OpenedHeader(ds, f, size, deflated=False)


def _find_pixel_data(
    opened: _OpenedHeader, implicit: bool, little: bool, name: str
) -> tuple[int | None, int]:
    """(value length or None if undefined, value offset) of the Pixel Data element that
    follows the header; raises when there is none or it holds float pixels."""
    ds = opened.ds
    tag, length, offset = pixel_element(opened.source, implicit, little)
    if tag in FLOAT_PIXEL_DATA:
        raise UnsupportedFileError(f"{name}: holds float pixel data, which is not an image scan")
    if tag != PIXEL_DATA and "Rows" in ds and "Columns" in ds:
        raise CorruptFileError(
            f"{name}: the header describes an image but the file ends before its pixel data; "
            "it was cut short (an incomplete copy?)"
        )
    if tag != PIXEL_DATA:
        sop = str(ds.get("SOPClassUID", "") or "")
        kind = f" ({shown(_uid_name(sop))[:80]})" if sop else ""
        raise NoPixelDataError(
            f"{name}: this DICOM object{kind} holds no image (no Pixel Data); only images "
            "can be scored"
        )
    return length, offset


def _image_attributes(ds: Any, name: str) -> _ImageAttributes:
    """The image attributes of the header, checked against each other."""
    rows = _int_attr(ds, "Rows", name)
    columns = _int_attr(ds, "Columns", name)
    samples = _int_attr(ds, "SamplesPerPixel", name, default=1)
    bits_allocated = _int_attr(ds, "BitsAllocated", name)
    bits_stored = _int_attr(ds, "BitsStored", name, default=bits_allocated)
    signed = _int_attr(ds, "PixelRepresentation", name, default=0) == 1
    frames = _int_attr(ds, "NumberOfFrames", name, default=1)
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if rows < 1 or columns < 1 or frames < 1:
        raise CorruptFileError(
            f"{name}: Rows x Columns x Frames = {rows} x {columns} x {frames}; each must be >= 1"
        )
    if photometric not in SUPPORTED_PHOTOMETRIC:
        raise UnsupportedFileError(
            f"{name}: photometric interpretation {shown(photometric or 'missing')[:40]} is not "
            "supported "
            f"(supported: {', '.join(SUPPORTED_PHOTOMETRIC)})"
        )
    if samples != SUPPORTED_PHOTOMETRIC[photometric]:
        raise CorruptFileError(
            f"{name}: {photometric} needs {SUPPORTED_PHOTOMETRIC[photometric]} samples per pixel, "
            f"the header says {samples}"
        )
    if bits_allocated not in (1, 8, 16, 32) or not 1 <= bits_stored <= bits_allocated:
        raise CorruptFileError(
            f"{name}: Bits Allocated {bits_allocated} / Bits Stored {bits_stored} is not a valid "
            "pixel layout"
        )
    return _ImageAttributes(
        rows, columns, samples, bits_allocated, bits_stored, signed, frames, photometric
    )


def _scan(
    path: Path, opened: _OpenedHeader, uid: str, image: _ImageAttributes, opts: ReadOptions
) -> Scan:
    """The checked header as a :class:`Scan`: regions, metadata, modality policy and the
    frame source that decodes later."""
    ds = opened.ds
    notes: list[str] = []
    region_crop = None
    if opts.crop:
        region_crop, region_notes = bmode_box(ds, image.rows, image.columns)
        notes.extend(region_notes)
    meta = dicom_metadata(ds, opts.pseudonym_salt, opts.keep_identifiers)
    meta.update(
        rows=image.rows,
        columns=image.columns,
        frames=image.frames,
        transfer_syntax=uid,
        transfer_syntax_name=_uid_name(uid),
        photometric=image.photometric,
    )
    dataset = _full_dataset(opened)
    display = Display(ds, image.photometric, image.bits_stored, image.signed)
    frame_source = DicomFrames(
        path,
        transfer_syntax=uid,
        transfer_syntax_name=_uid_name(uid),
        frame_count=image.frames,
        rows=image.rows,
        columns=image.columns,
        samples_per_pixel=image.samples,
        display=display,
        dataset=dataset,
    )
    return Scan(
        path=path,
        kind="dicom",
        rows=image.rows,
        columns=image.columns,
        frame_count=image.frames,
        samples_per_pixel=image.samples,
        selected_frames=select_frames(image.frames, opts.frames_to_score),
        metadata=meta,
        source=frame_source,
        region_crop=region_crop,
        crop_enabled=opts.crop,
        skip_reason=_skip_reason(meta, opts),
        notes=notes,
    )


def _full_dataset(opened: _OpenedHeader) -> Any | None:
    """The whole inflated dataset of a deflated file, pixels included (the frames are
    decoded from it); None otherwise (they are read from the file)."""
    if not opened.deflated:
        return None
    from pydicom.filereader import read_dataset

    opened.source.seek(0)
    dataset = read_dataset(opened.source, False, True)
    dataset.file_meta = opened.ds.file_meta
    return dataset

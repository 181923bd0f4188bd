"""Reading a DICOM file header first and checking it before any pixel is decoded.

Order of checks (each failure is one :class:`worker.errors.InputError` naming the file):
header parses; there is pixel data; the transfer syntax can be decoded here; the image
attributes make sense; the size is within the budget (``max_frames``, ``max_pixels``,
``max_samples``); the pixel data is as long as the header says (native) or its fragments
are complete (compressed). Only then are regions, metadata and the modality policy read.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
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
from dicom_io.regions import bmode_box
from dicom_io.scan import Scan
from worker.errors import (
    CorruptFileError,
    InputError,
    LimitExceededError,
    NoPixelDataError,
    UnsupportedFileError,
)

__all__ = ["MAX_INFLATED_BYTES", "read_dicom"]

log = logging.getLogger(__name__)

PIXEL_DATA = 0x7FE00010
FLOAT_PIXEL_DATA = (0x7FE00008, 0x7FE00009)
ITEM = 0xFFFEE000
SEQUENCE_DELIMITER = 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF
DEFLATED = "1.2.840.10008.1.2.1.99"
MAX_INFLATED_BYTES = 1 << 30  # a deflated file may not inflate to more than 1 GiB
MAX_FRAGMENTS = 1_000_000
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
_LONG_VRS = {
    b"OB",
    b"OD",
    b"OF",
    b"OL",
    b"OV",
    b"OW",
    b"SQ",
    b"SV",
    b"UC",
    b"UN",
    b"UR",
    b"UT",
    b"UV",
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


def _pixel_element(f: BinaryIO, implicit: bool, little: bool) -> tuple[int, int | None, int]:
    """(tag, value length or None if undefined, value offset) of the element at ``f``."""
    start = f.tell()
    head = f.read(8)
    if len(head) < 8:
        return 0, None, start
    endian = "<" if little else ">"
    if implicit:
        group, element, length = struct.unpack(f"{endian}HHL", head)
        offset = start + 8
    else:
        group, element, vr, short = struct.unpack(f"{endian}HH2sH", head)
        if vr in _LONG_VRS:
            more = f.read(4)
            if len(more) < 4:
                return (group << 16) | element, 0, start + 8
            (length,) = struct.unpack(f"{endian}L", more)
            offset = start + 12
        else:
            length, offset = short, start + 8
    tag = (group << 16) | element
    return tag, (None if length == UNDEFINED else int(length)), offset


def _walk_fragments(f: BinaryIO, offset: int, size: int, name: str) -> int:
    """Count the fragments of encapsulated pixel data, checking every item is complete."""
    position, items = offset, 0
    while True:
        f.seek(position)
        head = f.read(8)
        if len(head) < 8:
            raise CorruptFileError(
                f"{name}: the compressed pixel data stops after {items} items without its end "
                "marker; the file was cut short (an incomplete copy?)"
            )
        group, element, length = struct.unpack("<HHL", head)
        tag = (group << 16) | element
        if tag == SEQUENCE_DELIMITER:
            break
        if tag != ITEM or length == UNDEFINED:
            raise CorruptFileError(
                f"{name}: the compressed pixel data holds an unexpected element "
                f"({group:04X},{element:04X}) at byte {position}; the file is damaged"
            )
        if position + 8 + length > size:
            raise CorruptFileError(
                f"{name}: compressed fragment {items} needs {length} bytes but the file ends "
                f"{size - position - 8} bytes later; the file was cut short (an incomplete copy?)"
            )
        items += 1
        if items > MAX_FRAGMENTS:
            raise LimitExceededError(f"{name}: more than {MAX_FRAGMENTS} compressed fragments")
        position += 8 + length
    return max(items - 1, 0)  # the first item is the Basic Offset Table


def _inflate(path: Path, f: BinaryIO, name: str) -> tuple[Any, Any]:
    """Header and full dataset of a deflated file, inflated within MAX_INFLATED_BYTES."""
    from pydicom.filereader import read_dataset, read_file_meta_info

    meta = read_file_meta_info(path)
    f.seek(132)
    while True:  # skip the file meta group (always explicit VR little endian)
        start = f.tell()
        head = f.read(8)
        if len(head) < 8:
            raise CorruptFileError(f"{name}: the file ends inside its file meta information")
        group, _, vr = struct.unpack("<HH2s", head[:6])
        if group != 0x0002:
            f.seek(start)
            break
        if vr in _LONG_VRS:
            (length,) = struct.unpack("<L", f.read(4).ljust(4, b"\0"))
        else:
            (length,) = struct.unpack("<H", head[6:8])
        f.seek(f.tell() + length)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    chunks: list[bytes] = []
    total = 0
    while chunk := f.read(1 << 20):
        out = inflater.decompress(chunk, MAX_INFLATED_BYTES + 1 - total)
        total += len(out)
        chunks.append(out)
        if total > MAX_INFLATED_BYTES or inflater.unconsumed_tail:
            raise LimitExceededError(
                f"{name}: the deflated dataset inflates to more than "
                f"{MAX_INFLATED_BYTES >> 20} MiB; export it uncompressed or compressed as images"
            )
    buffer = io.BytesIO(b"".join(chunks))
    del chunks
    header = read_dataset(buffer, False, True, stop_when=_at_pixels)
    header.file_meta = meta
    return header, buffer


def _at_pixels(tag: Any, vr: Any, length: Any) -> bool:
    return int(tag) in (PIXEL_DATA, *FLOAT_PIXEL_DATA)


def _has_dicm(f: BinaryIO) -> bool:
    f.seek(128)
    marker = f.read(4) == b"DICM"
    f.seek(0)
    return marker


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


def _read(path: Path, f: BinaryIO, opts: ReadOptions, name: str) -> Scan:
    from pydicom import dcmread
    from pydicom.filereader import read_file_meta_info

    size = path.stat().st_size
    preamble = _has_dicm(f)
    deflated = False
    if preamble:
        file_meta = read_file_meta_info(path)
        syntax = str(file_meta.get("TransferSyntaxUID", "")).strip().rstrip("\x00")
        deflated = syntax == DEFLATED
    dataset: Any | None = None
    if deflated:
        ds, stream = _inflate(path, f, name)
        source: BinaryIO = stream
        size = len(stream.getbuffer())
    else:
        ds = dcmread(f, stop_before_pixels=True, force=not preamble, defer_size="1 MB")
        source = f
    uid, implicit, little = _transfer_syntax(ds, name)

    tag, length, offset = _pixel_element(source, implicit, little)
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
    _check_decoder(uid, name)

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
    _check_limits(rows, columns, frames, samples, opts, name)

    from pydicom.uid import UID

    encapsulated = UID(uid).is_encapsulated
    if encapsulated:
        if length is not None:
            raise CorruptFileError(
                f"{name}: compressed ({_uid_name(uid)}) pixel data must be encapsulated, but it "
                "has a fixed length; the file is damaged"
            )
        fragments = _walk_fragments(source, offset, size, name)
        if fragments < frames:
            raise CorruptFileError(
                f"{name}: the header says {frames} frames but the compressed pixel data holds "
                f"{fragments} fragment(s); the header and the pixel data disagree"
            )
    else:
        _check_native_length(
            length,
            offset,
            size,
            rows * columns * frames * samples,
            bits_allocated,
            photometric,
            name,
        )

    notes: list[str] = []
    region_crop = None
    if opts.crop:
        region_crop, region_notes = bmode_box(ds, rows, columns)
        notes.extend(region_notes)
    meta = dicom_metadata(ds, opts.pseudonym_salt, opts.keep_identifiers)
    meta.update(
        rows=rows,
        columns=columns,
        frames=frames,
        transfer_syntax=uid,
        transfer_syntax_name=_uid_name(uid),
        photometric=photometric,
    )
    if deflated:
        from pydicom.filereader import read_dataset

        source.seek(0)
        dataset = read_dataset(source, False, True)
        dataset.file_meta = ds.file_meta
    display = Display(ds, photometric, bits_stored, signed)
    frame_source = DicomFrames(
        path,
        transfer_syntax=uid,
        transfer_syntax_name=_uid_name(uid),
        frame_count=frames,
        rows=rows,
        columns=columns,
        samples_per_pixel=samples,
        display=display,
        dataset=dataset,
    )
    return Scan(
        path=path,
        kind="dicom",
        rows=rows,
        columns=columns,
        frame_count=frames,
        samples_per_pixel=samples,
        selected_frames=select_frames(frames, opts.frames_to_score),
        metadata=meta,
        source=frame_source,
        region_crop=region_crop,
        crop_enabled=opts.crop,
        skip_reason=_skip_reason(meta, opts),
        notes=notes,
    )


def _check_native_length(
    length: int | None,
    offset: int,
    size: int,
    values: int,
    bits_allocated: int,
    photometric: str,
    name: str,
) -> None:
    if length is None:
        raise CorruptFileError(
            f"{name}: uncompressed pixel data has an undefined length; the file is damaged"
        )
    expected = (values + 7) // 8 if bits_allocated == 1 else values * (bits_allocated // 8)
    if photometric == "YBR_FULL_422":
        expected = expected // 3 * 2
    available = size - offset
    if available < length:
        raise CorruptFileError(
            f"{name}: the pixel data should be {length} bytes but the file ends after "
            f"{max(available, 0)}; the file was cut short (an incomplete copy?)"
        )
    if length not in (expected, expected + 1):
        raise CorruptFileError(
            f"{name}: the pixel data is {length} bytes but Rows, Columns, Frames, Samples and "
            f"Bits Allocated imply {expected}; the header and the pixel data disagree"
        )

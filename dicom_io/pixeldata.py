"""The bytes of the Pixel Data element, walked without decoding a pixel.

Owns the byte-level reading of a DICOM file around its pixels: the ``DICM`` preamble
marker, the element header of (7FE0,0010) read straight from the stream (tag, length,
value offset), the walk over the items of encapsulated (compressed) pixel data, the length
check of native pixel data, and the bounded inflation of a deflated dataset. Every failure is
one :class:`worker.errors.InputError` naming the file; :mod:`dicom_io.header` calls these
in its order of checks.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any, BinaryIO

from worker.errors import CorruptFileError, LimitExceededError

__all__ = [
    "DEFLATED",
    "FLOAT_PIXEL_DATA",
    "MAX_FRAGMENTS",
    "MAX_INFLATED_BYTES",
    "PIXEL_DATA",
    "at_pixel_data",
    "check_pixel_data",
    "count_fragments",
    "has_preamble",
    "inflate",
    "pixel_element",
]

PIXEL_DATA = 0x7FE00010
FLOAT_PIXEL_DATA = (0x7FE00008, 0x7FE00009)
ITEM = 0xFFFEE000
SEQUENCE_DELIMITER = 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF
DEFLATED = "1.2.840.10008.1.2.1.99"
MAX_INFLATED_BYTES = 1 << 30  # a deflated file may not inflate to more than 1 GiB
MAX_FRAGMENTS = 1_000_000
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


def pixel_element(f: BinaryIO, implicit: bool, little: bool) -> tuple[int, int | None, int]:
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


def count_fragments(f: BinaryIO, offset: int, size: int, name: str) -> int:
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


def inflate(path: Path, f: BinaryIO, name: str) -> tuple[Any, Any]:
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
    header = read_dataset(buffer, False, True, stop_when=at_pixel_data)
    header.file_meta = meta
    return header, buffer


def at_pixel_data(tag: Any, vr: Any, length: Any) -> bool:
    return int(tag) in (PIXEL_DATA, *FLOAT_PIXEL_DATA)


def has_preamble(f: BinaryIO) -> bool:
    f.seek(128)
    marker = f.read(4) == b"DICM"
    f.seek(0)
    return marker


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


def check_pixel_data(
    f: BinaryIO,
    *,
    encapsulated: bool,
    syntax_name: str,
    length: int | None,
    offset: int,
    size: int,
    frames: int,
    values: int,
    bits_allocated: int,
    photometric: str,
    name: str,
) -> None:
    """Check that the pixel data is all there: the items of encapsulated pixel data are
    complete and at least one per frame; native pixel data is as long as ``values`` samples of
    ``bits_allocated`` bits (``length``, ``offset``: from :func:`pixel_element`)."""
    if encapsulated:
        if length is not None:
            raise CorruptFileError(
                f"{name}: compressed ({syntax_name}) pixel data must be encapsulated, but it "
                "has a fixed length; the file is damaged"
            )
        fragments = count_fragments(f, offset, size, name)
        if fragments < frames:
            raise CorruptFileError(
                f"{name}: the header says {frames} frames but the compressed pixel data holds "
                f"{fragments} fragment(s); the header and the pixel data disagree"
            )
    else:
        _check_native_length(length, offset, size, values, bits_allocated, photometric, name)

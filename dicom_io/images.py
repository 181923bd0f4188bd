"""PNG and JPEG exports: header first, the same pixel budget, EXIF orientation, a sidecar.

* Modes: 1/L (8-bit grey), I;16 (16-bit grey, scaled by 1/257: PNG samples are display
  values over the full range), LA/RGBA/PA (composited over black, the ultrasound
  background), P (palette, expanded to RGB), RGB, CMYK/YCbCr JPEG (converted to RGB).
* The EXIF orientation is read from the header and applied to the decoded pixels, so
  ``rows`` and ``columns`` are those of the upright image.
* Pillow's own decompression-bomb guard stays on; the configured ``max_pixels`` and
  ``max_samples`` are checked from the header before decoding.
* ``scan.png.json`` beside ``scan.png`` may carry the QA metadata (see
  :func:`dicom_io.metadata.sidecar_metadata`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dicom_io.frames import select_frames
from dicom_io.messages import (
    OUT_OF_MEMORY,
    first_line,
    quiet_warnings,
    shown,
    stalled,
    storage_unavailable,
)
from dicom_io.metadata import read_sidecar, sidecar_metadata
from dicom_io.options import ReadOptions
from dicom_io.scan import Scan
from worker.errors import (
    CorruptFileError,
    InputError,
    LimitExceededError,
    UnsupportedFileError,
)

__all__ = ["ImageFrames", "read_image"]

GREY_MODES = {"1", "L", "LA", "I;16", "I;16B", "I;16L", "I;16N", "I"}
PALETTE_MODES = {"P", "PA"}
COLOUR_MODES = {"RGB", "RGBA", "CMYK", "YCbCr"}
ORIENTATION = 0x0112


def _orientation(im: Any) -> int:
    """The EXIF orientation (1..8) from the header, 1 when absent or unreadable."""
    from PIL import Image

    raw = im.info.get("exif")
    if not raw:
        return 1
    try:
        exif = Image.Exif()
        exif.load(raw)
        value = int(exif.get(ORIENTATION, 1))
    except Exception:  # a damaged EXIF block does not make the image unusable
        return 1
    return value if 1 <= value <= 8 else 1


def _orient(arr: NDArray[np.uint8], orientation: int) -> NDArray[np.uint8]:
    """Apply an EXIF orientation like ``PIL.ImageOps.exif_transpose``."""
    if orientation == 2:
        arr = arr[:, ::-1]
    elif orientation == 3:
        arr = arr[::-1, ::-1]
    elif orientation == 4:
        arr = arr[::-1]
    elif orientation == 5:
        arr = np.swapaxes(arr, 0, 1)
    elif orientation == 6:
        arr = np.rot90(arr, k=-1)
    elif orientation == 7:
        arr = np.swapaxes(arr, 0, 1)[::-1, ::-1]
    elif orientation == 8:
        arr = np.rot90(arr, k=1)
    return np.ascontiguousarray(arr)


def _over_black(colour: NDArray[np.uint8], alpha: NDArray[np.uint8]) -> NDArray[np.uint8]:
    if alpha.min() == 255:
        return np.ascontiguousarray(colour)
    weight = alpha.astype(np.float32) / 255.0
    if colour.ndim == 3:
        weight = weight[..., None]
    return np.rint(colour.astype(np.float32) * weight).astype(np.uint8)


def _to_array(im: Any) -> NDArray[np.uint8]:
    """A loaded Pillow image as display uint8 (H, W) or (H, W, 3)."""
    mode = im.mode
    if mode == "L":
        return np.asarray(im, dtype=np.uint8)
    if mode == "1":
        return np.asarray(im.convert("L"), dtype=np.uint8)
    if mode == "LA":
        arr = np.asarray(im, dtype=np.uint8)
        return _over_black(arr[..., 0], arr[..., 1])
    if mode.startswith("I"):
        wide = np.asarray(im).astype(np.float32)
        return np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8)
    if mode in PALETTE_MODES or mode == "RGBA":
        rgba = np.asarray(im.convert("RGBA"), dtype=np.uint8)
        return _over_black(rgba[..., :3], rgba[..., 3])
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


class ImageFrames:
    """Decodes the single frame of a PNG/JPEG file."""

    def __init__(self, path: Path, size: tuple[int, int], orientation: int) -> None:
        self.path = path
        self.size = size
        self.orientation = orientation

    def frames(self, indices: Sequence[int]) -> Iterator[tuple[int, NDArray[np.uint8]]]:
        if 0 not in indices:
            return
        yield 0, self._decode()

    def _decode(self) -> NDArray[np.uint8]:
        from PIL import Image

        name = shown(self.path)
        fast = _decode_plain_png(self.path, self.size)
        if fast is not None:
            return _orient(fast, self.orientation)
        try:
            with quiet_warnings(name), Image.open(self.path, formats=["PNG", "JPEG"]) as im:
                if im.size != self.size:
                    raise CorruptFileError(
                        f"{name}: the image changed size since it was read "
                        f"({self.size} then {im.size}); is it still being written?"
                    )
                im.load()
                arr = _to_array(im)
        except InputError:
            raise
        except MemoryError as exc:
            raise LimitExceededError(f"{name}: the image {OUT_OF_MEMORY}") from exc
        except OSError as exc:
            if stalled(exc):
                raise storage_unavailable(name, exc) from exc
            raise CorruptFileError(
                f"{name}: the image cannot be decoded ({first_line(exc)}); the file is damaged "
                "or was cut short"
            ) from exc
        except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ...
            raise CorruptFileError(
                f"{name}: the image cannot be decoded ({first_line(exc)}); the file is damaged "
                "or was cut short"
            ) from exc
        return _orient(arr, self.orientation)


_PNG_HEAD = 33  # signature + IHDR chunk


def _plain_png_header(head: bytes, size: tuple[int, int]) -> bool:
    """Whether ``head`` (a file's first 33 bytes) is the header of a non-interlaced 8-bit
    grey or RGB PNG of ``size`` (width, height)."""
    if len(head) < _PNG_HEAD or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return False
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    depth, colour, interlace = head[24], head[25], head[28]
    return (width, height) == size and depth == 8 and colour in (0, 2) and interlace == 0


def _decode_plain_png(path: Path, size: tuple[int, int]) -> NDArray[np.uint8] | None:
    """The pixels of a plain PNG (non-interlaced, 8-bit grey or RGB, no tRNS chunk: the
    files libspng decodes to exactly the pixels Pillow gives; Pillow ignores gAMA/iCCP too)
    decoded by libspng (``pyspng``), about twice as fast as Pillow. None when pyspng is not
    installed, the file is anything else (JPEG included: only its header is read), or
    libspng refuses it: Pillow then decodes it and words any error."""
    try:
        import pyspng
    except ImportError:
        return None
    try:
        with path.open("rb") as fh:
            head = fh.read(_PNG_HEAD)
            if not _plain_png_header(head, size):
                return None
            data = head + fh.read()
    except OSError:
        return None
    idat = data.find(b"IDAT")
    if b"tRNS" in (data[:idat] if idat > 0 else data):
        return None
    try:
        arr = pyspng.load(data)
    except Exception:  # a damaged file: Pillow's path gives the message
        return None
    expected = (size[1], size[0]) if data[25] == 0 else (size[1], size[0], 3)
    if arr.dtype != np.uint8 or arr.shape != expected:
        return None
    return np.ascontiguousarray(arr)


def _png_size(path: Path) -> tuple[int, int] | None:
    """Width and height from a PNG's IHDR chunk, for messages."""
    try:
        with path.open("rb") as f:
            head = f.read(24)
    except OSError:
        return None
    if len(head) < 24 or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _open_header(path: Path, name: str) -> tuple[str, str, tuple[int, int], int, int]:
    """(format, mode, (width, height), orientation, frame count) without decoding pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with quiet_warnings(name), Image.open(path, formats=["PNG", "JPEG"]) as im:
            return (
                str(im.format),
                str(im.mode),
                (int(im.size[0]), int(im.size[1])),
                _orientation(im),
                int(getattr(im, "n_frames", 1) or 1),
            )
    except Image.DecompressionBombError as exc:
        size = _png_size(path)
        what = f"declares {size[0]} x {size[1]} pixels" if size else first_line(exc)
        raise LimitExceededError(
            f"{name}: {what}, more than the image decoder allows; refused before decoding "
            "(a damaged file or a decompression bomb)"
        ) from exc
    except UnidentifiedImageError as exc:
        raise CorruptFileError(
            f"{name}: starts like a PNG/JPEG but its header cannot be read; the file is damaged"
        ) from exc
    except MemoryError as exc:
        raise LimitExceededError(f"{name}: the image header {OUT_OF_MEMORY}") from exc
    except OSError as exc:
        if stalled(exc):
            raise storage_unavailable(name, exc) from exc
        raise CorruptFileError(
            f"{name}: the image header cannot be read ({first_line(exc)}); the file is damaged"
        ) from exc
    except Exception as exc:
        raise CorruptFileError(
            f"{name}: the image header cannot be read ({first_line(exc)}); the file is damaged"
        ) from exc


def read_image(path: Path, opts: ReadOptions) -> Scan:
    """Read a PNG or JPEG file header first; pixels are decoded by ``iter_frames``."""
    name = shown(path)
    fmt, mode, (width, height), orientation, frame_count = _open_header(path, name)
    if mode in GREY_MODES:
        samples, photometric = 1, "MONOCHROME2"
    elif mode in PALETTE_MODES:
        samples, photometric = 1, "PALETTE COLOR"
    elif mode in COLOUR_MODES:
        samples, photometric = 3, "RGB"
    else:
        raise UnsupportedFileError(f"{name}: {fmt} pixel mode {mode} is not supported")
    pixels = width * height
    if pixels > opts.max_pixels:
        raise LimitExceededError(
            f"{name}: {width} x {height} = {pixels / 1e6:g} megapixels exceeds the "
            f"{opts.max_pixels / 1e6:g} megapixel limit (USQA_MAX_PIXELS); refused before decoding"
        )
    if pixels * samples > opts.max_samples:
        raise LimitExceededError(
            f"{name}: {width} x {height} x {samples} samples exceeds the "
            f"{opts.max_samples / 1e6:g} million sample limit (USQA_MAX_SAMPLES)"
        )
    rows, columns = (width, height) if orientation >= 5 else (height, width)
    meta = sidecar_metadata(read_sidecar(path), opts.pseudonym_salt, opts.keep_identifiers)
    meta.update(rows=rows, columns=columns, frames=1, photometric=photometric)
    notes = []
    if frame_count > 1:
        notes.append(f"the {fmt} holds {frame_count} frames; only the first is read")
    return Scan(
        path=path,
        kind="image",
        rows=rows,
        columns=columns,
        frame_count=1,
        samples_per_pixel=samples,
        selected_frames=select_frames(1, opts.frames_to_score),
        metadata=meta,
        source=ImageFrames(path, (width, height), orientation),
        region_crop=None,
        crop_enabled=opts.crop,
        skip_reason=None,
        notes=notes,
    )

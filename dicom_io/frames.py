"""Choosing the frames to score and decoding only those, one at a time.

Frames are decoded with pydicom's ``iter_pixels`` straight from the file, so a cine loop is
never held whole in memory: for native (uncompressed) data pydicom reads just the selected
frames' bytes, for encapsulated data (JPEG, JPEG-LS, JPEG 2000, RLE) just their fragments.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from dicom_io.display import Display
from dicom_io.messages import (
    OUT_OF_MEMORY,
    first_line,
    quiet_warnings,
    shown,
    stalled,
    storage_unavailable,
)
from worker.errors import (
    CorruptFileError,
    InputError,
    LimitExceededError,
    UsqaError,
)

__all__ = ["DicomFrames", "select_frames"]

# 8-bit JPEG syntaxes that Pillow decodes (12-bit extended falls back to other plugins).
FAST_JPEG_SYNTAXES = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"}
UNSAFE_PLUGINS = {"gdcm"}

log = logging.getLogger(__name__)


def select_frames(frame_count: int, frames_to_score: int) -> list[int]:
    """0-based indices to score: all frames (``frames_to_score`` 0 or >= the count), else
    that many evenly spaced from the first to the last frame."""
    if frame_count <= 0:
        return []
    if frames_to_score <= 0 or frames_to_score >= frame_count:
        return list(range(frame_count))
    spots = np.linspace(0, frame_count - 1, frames_to_score)
    return sorted({round(float(s)) for s in spots})


class DicomFrames:
    """Decodes frames of one DICOM file to display intensity (see :mod:`dicom_io.display`).

    ``dataset`` is given only for deflated files, which are inflated (within a budget) into
    memory first; otherwise frames are read from ``path``.
    """

    def __init__(
        self,
        path: Path,
        *,
        transfer_syntax: str,
        transfer_syntax_name: str,
        frame_count: int,
        rows: int,
        columns: int,
        samples_per_pixel: int,
        display: Display,
        dataset: Any | None = None,
    ) -> None:
        self.path = path
        self.transfer_syntax = transfer_syntax
        self.transfer_syntax_name = transfer_syntax_name
        self.frame_count = frame_count
        self.rows = rows
        self.columns = columns
        self.samples_per_pixel = samples_per_pixel
        self.display = display
        self.dataset = dataset

    def _fail(self, index: int, exc: BaseException) -> UsqaError:
        where = f"{shown(self.path)}: frame {index + 1} of {self.frame_count}"
        if stalled(exc):
            return storage_unavailable(where, exc)
        if isinstance(exc, MemoryError):
            return LimitExceededError(f"{where} {OUT_OF_MEMORY}")
        return CorruptFileError(
            f"{where} could not be decoded ({self.transfer_syntax_name}): {first_line(exc)}; "
            "the file is damaged or uses an encoding this installation cannot read"
        )

    def _plugins(self) -> list[str]:
        """Decoder plugins to try, in order. GDCM is left out (it aborts the whole process
        on some damaged streams); Pillow comes first for 8-bit JPEG, about twice as fast.
        ``""`` means pydicom's own choice (native data needs no plugin)."""
        from pydicom.pixels import get_decoder

        available = list(get_decoder(self.transfer_syntax).available_plugins)
        safe = [p for p in available if p not in UNSAFE_PLUGINS]
        if not safe:
            return [""]
        if self.transfer_syntax in FAST_JPEG_SYNTAXES and "pillow" in safe:
            safe.remove("pillow")
            safe.insert(0, "pillow")
        return safe

    def frames(self, indices: Sequence[int]) -> Iterator[tuple[int, NDArray[np.uint8]]]:
        """Yield ``(index, frame)`` for ``indices`` (ascending, in range), display uint8.

        A frame one plugin fails on is retried with the next; the frames after it stay
        with the plugin that worked."""
        from pydicom.pixels import iter_pixels

        wanted = list(indices)
        src: Any = self.dataset if self.dataset is not None else self.path
        kwargs: dict[str, Any] = {}
        if self.dataset is None:
            kwargs["transfer_syntax_uid"] = self.transfer_syntax
        name = shown(self.path)
        plugins = self._plugins()
        done = 0
        while done < len(wanted):
            remaining = wanted[done:]
            iterator = cast(
                Generator[Any, None, None],
                iter_pixels(src, indices=remaining, decoding_plugin=plugins[0], **kwargs),
            )
            try:
                for index in remaining:
                    try:
                        with quiet_warnings(name):
                            arr = next(iterator)
                            frame = self._check(index, self.display(arr))
                    except StopIteration as exc:
                        raise CorruptFileError(
                            f"{name}: frame {index + 1} of {self.frame_count} is missing from "
                            "the pixel data; the file is damaged"
                        ) from exc
                    except InputError:
                        raise
                    except Exception as exc:  # third-party decoders raise anything
                        if len(plugins) > 1:
                            log.debug(
                                "%s: frame %d: %s failed (%s)",
                                name,
                                index + 1,
                                plugins[0],
                                first_line(exc),
                            )
                            plugins.pop(0)
                            break
                        raise self._fail(index, exc) from exc
                    yield index, frame
                    done += 1
            finally:
                iterator.close()

    def _check(self, index: int, frame: NDArray[np.uint8]) -> NDArray[np.uint8]:
        expected = (self.rows, self.columns)
        if (
            frame.shape[:2] != expected
            or frame.ndim not in (2, 3)
            or (frame.ndim == 3 and frame.shape[2] != 3)
        ):
            raise CorruptFileError(
                f"{shown(self.path)}: frame {index + 1} decoded to shape {frame.shape}, "
                f"expected {self.rows} x {self.columns}; the header and the pixel data disagree"
            )
        return frame

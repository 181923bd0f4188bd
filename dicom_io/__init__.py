"""dicom_io: read ultrasound DICOM, PNG and JPEG files the way the sonographer saw them.

``read(path, options)`` reads the header only and checks it; ``Scan.iter_frames()`` decodes
the selected frames one at a time to uint8 display intensity, cut to the B-mode box.

The package owns opening files and everything about their bytes: the entry point
(``reader``), the DICOM header checks (``header``), the byte-level walk of the Pixel Data
element (``pixeldata``), PNG/JPEG files (``images``), frame decoding and display intensity
(``frames``, ``display``), the scan and its header record (``scan``, ``record``), the crop box
(``cropbox``) found from ultrasound regions (``regions``) or the border heuristic
(``borders``, on the exact image filters of ``filters``), metadata and pseudonymisation
(``metadata``), the read options and input limits (``options``) and the wording of its
messages (``messages``). It knows nothing of the model, the database or Celery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dicom_io.cropbox import CropBox
    from dicom_io.options import ReadOptions
    from dicom_io.reader import read
    from dicom_io.record import ScanHeader
    from dicom_io.scan import Scan

__all__ = ["CropBox", "ReadOptions", "Scan", "ScanHeader", "read"]

# The names above are imported on first use, so that ``dicom_io.messages`` (which ``db``
# and the CLI import for printable text) costs no pydicom, numpy or Pillow import.
_HOMES = {
    "CropBox": "dicom_io.cropbox",
    "ReadOptions": "dicom_io.options",
    "Scan": "dicom_io.scan",
    "ScanHeader": "dicom_io.record",
    "read": "dicom_io.reader",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'dicom_io' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value

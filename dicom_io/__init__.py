"""dicom_io: read ultrasound DICOM, PNG and JPEG files the way the sonographer saw them.

``read(path, options)`` reads the header only and checks it; ``Scan.iter_frames()`` decodes
the selected frames one at a time to uint8 display intensity, cut to the B-mode box.
"""

from dicom_io.options import ReadOptions
from dicom_io.reader import read
from dicom_io.record import ScanHeader
from dicom_io.scan import CropBox, Scan

__all__ = ["CropBox", "ReadOptions", "Scan", "ScanHeader", "read"]

"""Small DICOM files built in code for the dicom_io tests (pydicom ``set_pixel_data``)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)

US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"

PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "PID-12345"
OPERATOR = "Smith^Sam"


def smooth_image(rows: int, columns: int, colour: bool, seed: int = 0) -> np.ndarray:
    """A smooth test picture with mild noise (lossy codecs stay close to it)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:columns].astype(np.float32)
    base = 128 + 80 * np.sin(x / 9.0) * np.cos(y / 13.0)
    base = base + rng.normal(0, 3, size=base.shape)
    if not colour:
        return np.clip(base, 0, 255).astype(np.uint8)
    planes = [base, 255 - base, 96 + 0.4 * base]
    return np.clip(np.stack(planes, axis=-1), 0, 255).astype(np.uint8)


def noise_image(shape: tuple[int, ...], seed: int = 0, high: int = 256) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dtype = np.uint8 if high <= 256 else np.uint16
    return rng.integers(0, high, size=shape).astype(dtype)


def base_dataset(modality: str = "US", multiframe: bool = False) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = US_MULTIFRAME if multiframe else US_IMAGE
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.Manufacturer = "Acme Ultrasound"
    ds.ManufacturerModelName = "Sono 9"
    ds.StationName = "ROOM3"
    ds.DeviceSerialNumber = "SN-77"
    ds.SoftwareVersions = ["4.2", "build 17"]
    ds.TransducerData = ["L12-5", "UNUSED", ""]
    ds.InstitutionName = "General Hospital"
    ds.OperatorsName = OPERATOR
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.BodyPartExamined = "BREAST"
    ds.StudyDate = "20240131"
    ds.StudyTime = "093015"
    ds.AcquisitionDateTime = "20240131093512.250000+0100"
    ds.BurnedInAnnotation = "YES"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def build(
    arr: np.ndarray,
    photometric: str,
    *,
    bits_stored: int | None = None,
    modality: str = "US",
    extra: dict[str, Any] | None = None,
) -> Dataset:
    """A dataset holding ``arr`` (frames first when multi-frame) natively, little endian."""
    multiframe = arr.ndim == 4 or (
        arr.ndim == 3 and photometric in {"MONOCHROME1", "MONOCHROME2", "PALETTE COLOR"}
    )
    ds = base_dataset(modality, multiframe)
    ds.set_pixel_data(
        arr, photometric, bits_stored or arr.dtype.itemsize * 8, generate_instance_uid=False
    )
    if multiframe:
        ds.FrameTime = "40"
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    return ds


def save(ds: Dataset, path: Path, transfer_syntax: str | None = None) -> Path:
    """Write ``ds`` as a DICOM file; big endian swaps 16-bit pixel data as required."""
    if transfer_syntax is not None:
        uid = UID(transfer_syntax)
        if uid == ExplicitVRBigEndian and int(ds.BitsAllocated) == 16:
            data = np.frombuffer(ds.PixelData, dtype="<u2").astype(">u2").tobytes()
            ds.PixelData = data
            ds["PixelData"].VR = "OW"
        ds.file_meta.TransferSyntaxUID = uid
    ds.save_as(path, enforce_file_format=True)
    return path


def to_planar(ds: Dataset) -> Dataset:
    """Rewrite 8-bit colour pixel data with planar configuration 1 (RRR...GGG...BBB...)."""
    frames = int(ds.get("NumberOfFrames", 1))
    arr = np.frombuffer(ds.PixelData, dtype=np.uint8)[: frames * ds.Rows * ds.Columns * 3]
    arr = arr.reshape(frames, ds.Rows * ds.Columns, 3)
    ds.PixelData = np.ascontiguousarray(arr.transpose(0, 2, 1)).tobytes()
    ds.PlanarConfiguration = 1
    return ds


def jpeg_baseline(arr: np.ndarray, quality: int = 95) -> Dataset:
    """JPEG baseline frames encoded with Pillow: YBR_FULL_422 colour or MONOCHROME2 grey."""
    frames = arr if arr.ndim == 4 or (arr.ndim == 3 and arr.shape[-1] != 3) else arr[None]
    colour = frames.ndim == 4
    encoded = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=quality, subsampling=1)
        encoded.append(buffer.getvalue())
    return encapsulated(
        encoded,
        frames.shape[1],
        frames.shape[2],
        "YBR_FULL_422" if colour else "MONOCHROME2",
        3 if colour else 1,
        JPEGBaseline8Bit,
    )


def encapsulated(
    fragments: list[bytes],
    rows: int,
    columns: int,
    photometric: str,
    samples: int,
    transfer_syntax: str,
) -> Dataset:
    ds = base_dataset("US", multiframe=len(fragments) > 1)
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if samples == 3:
        ds.PlanarConfiguration = 0
    if len(fragments) > 1:
        ds.NumberOfFrames = len(fragments)
        ds.FrameTime = "33.3"
    ds.PixelData = encapsulate(fragments)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    return ds


def region(x0: int, y0: int, x1: int, y1: int, spatial: int, data_type: int) -> Dataset:
    item = Dataset()
    item.RegionSpatialFormat = spatial
    item.RegionDataType = data_type
    item.RegionFlags = 0
    item.RegionLocationMinX0 = x0
    item.RegionLocationMinY0 = y0
    item.RegionLocationMaxX1 = x1
    item.RegionLocationMaxY1 = y1
    item.PhysicalUnitsXDirection = 3
    item.PhysicalUnitsYDirection = 3
    item.PhysicalDeltaX = 0.01
    item.PhysicalDeltaY = 0.01
    return item


def with_regions(ds: Dataset, items: list[Dataset]) -> Dataset:
    ds.SequenceOfUltrasoundRegions = Sequence(items)
    return ds


__all__ = [
    "OPERATOR",
    "PATIENT_ID",
    "PATIENT_NAME",
    "ExplicitVRLittleEndian",
    "base_dataset",
    "build",
    "encapsulated",
    "jpeg_baseline",
    "noise_image",
    "region",
    "save",
    "smooth_image",
    "to_planar",
    "with_regions",
]

"""The benchmark's input files: BUSI test-split PNGs and multi-frame JPEG DICOM cine loops
built from them, written to a scratch folder, then moved into drop folders at once."""

from __future__ import annotations

import csv
import io
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from worker.errors import ConfigError

__all__ = ["BUSI", "Workload", "drop", "make_cine", "png_variant", "test_pngs"]

BUSI = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "busi"
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"


def test_pngs(busi: Path = BUSI) -> list[Path]:
    """The BUSI test-split PNGs, in splits.csv order (never train or val images)."""
    table = busi / "splits.csv"
    if not table.is_file():
        raise ConfigError(
            f"{table}: the BUSI splits file is missing; the benchmark needs the BUSI copy "
            "under ../shared/datasets/busi (or pass --busi DIR)"
        )
    with table.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    return [busi / r["path"] for r in rows]


def png_variant(src: Path, dst: Path, tag: str) -> Path:
    """``src`` re-saved with a text chunk ``tag``: the same pixels, other bytes (so the
    ledger's content deduplication does not skip it)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("usqa-bench", tag)
    with Image.open(src) as img:
        img.save(dst, format="PNG", pnginfo=info)
    return dst


def _frame(base: np.ndarray, index: int, rows: int, columns: int) -> np.ndarray:
    """One RGB cine frame: the BUSI image scaled to ``rows x columns``, panned a little
    from frame to frame (probe motion), with a coloured marker as scanners draw them."""
    dx = round(6 * np.sin(index / 7.0))
    dy = round(4 * np.cos(index / 11.0))
    moved = np.roll(base, (dy, dx), axis=(0, 1))
    rgb = np.repeat(moved[:, :, None], 3, axis=2)
    rgb[8:20, 8 + (index % 40) : 20 + (index % 40)] = (255, 200, 0)
    return np.ascontiguousarray(rgb[:rows, :columns])


def make_cine(
    sources: list[Path], path: Path, frames: int, rows: int = 480, columns: int = 640
) -> Path:
    """A multi-frame ultrasound DICOM file of ``frames`` JPEG baseline frames (YBR_FULL_422,
    encoded with Pillow), built from BUSI ``sources`` taken in turn (about 30 frames each)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit, generate_uid

    bases = []
    for src in sources:
        with Image.open(src) as img:
            grey = img.convert("L").resize((columns + 16, rows + 16), Image.Resampling.BILINEAR)
        bases.append(np.asarray(grey))
    encoded = []
    for i in range(frames):
        frame = _frame(bases[(i // 30) % len(bases)], i, rows, columns)
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=90, subsampling=1)
        encoded.append(buffer.getvalue())
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = US_MULTIFRAME
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "US"
    ds.Manufacturer = "usqa bench"
    ds.StationName = "BENCH1"
    ds.BodyPartExamined = "BREAST"
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = frames
    ds.FrameTime = "33.3"
    ds.PixelData = encapsulate(encoded)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.save_as(path, enforce_file_format=True)
    return path


@dataclass
class Workload:
    """Every file of one benchmark run, in a scratch folder ``root``."""

    root: Path
    pngs: list[Path]  # N PNGs: the BUSI test split (read in place), then tagged copies
    latency: list[Path]  # single files for the latency probe (same pixels, other bytes)
    cines: list[Path]  # M multi-frame JPEG DICOM files
    long_cine: Path | None  # one long cine for the memory check
    cine_frames: int
    long_cine_frames: int

    @classmethod
    def build(
        cls,
        root: Path,
        files: int,
        latency_files: int,
        cine_files: int,
        cine_frames: int,
        long_cine_frames: int,
        busi: Path = BUSI,
    ) -> Workload:
        all_pngs = test_pngs(busi)
        if files < 1:
            raise ConfigError(f"--files {files}: expected 1 or more")
        made = root / "made"
        made.mkdir(parents=True)
        # the test split as it is, then copies re-saved with a tag (same pixels, other
        # bytes, so the ledger does not skip them as duplicates)
        pngs = all_pngs[:files] + [
            png_variant(
                all_pngs[i % len(all_pngs)],
                made / f"copy{i // len(all_pngs)}-{i % len(all_pngs):03d}.png",
                f"copy{i // len(all_pngs)}",
            )
            for i in range(len(all_pngs), files)
        ]
        latency = [
            png_variant(all_pngs[i % len(all_pngs)], made / f"latency-{i:03d}.png", f"lat{i}")
            for i in range(latency_files)
        ]
        cines = [
            make_cine(
                [all_pngs[(3 * i + k) % len(all_pngs)] for k in range(3)],
                made / f"cine-{i:03d}.dcm",
                cine_frames,
            )
            for i in range(cine_files)
        ]
        long_cine = (
            make_cine(all_pngs[-6:], made / "cine-long.dcm", long_cine_frames)
            if long_cine_frames > 0
            else None
        )
        return cls(root, pngs, latency, cines, long_cine, cine_frames, long_cine_frames)


def drop(files: list[Path], folder: Path, staging: Path) -> tuple[float, float]:
    """Copy ``files`` to ``staging`` (same file system), then rename them all into
    ``folder`` at once. Returns the wall-clock and monotonic time of the first rename."""
    staging.mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    staged = []
    for i, src in enumerate(files):
        target = staging / f"{i:05d}-{src.name.replace(' ', '_')}"
        shutil.copyfile(src, target)
        staged.append(target)
    wall, mono = time.time(), time.monotonic()
    for target in staged:
        target.replace(folder / target.name)
    return wall, mono

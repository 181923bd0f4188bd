"""``usqa inspect``: one line per file, exit codes, previews, and no traceback ever."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, generate_uid

from worker.cli import main
from worker.commands.inspect import preview_name

EXAMPLES = [
    "examples_ybr_color.dcm",
    "examples_palette.dcm",
    "examples_rgb_color.dcm",
    "examples_jpeg2k.dcm",
    "ExplVR_BigEnd.dcm",
]
REPO = Path(__file__).resolve().parents[2]


def example(name: str) -> str:
    return str(get_testdata_file(name))


def dicom(
    path: Path, *, modality: str = "US", rows: int = 32, columns: int = 40, frames: int = 1
) -> Path:
    """A small valid grey DICOM file (header values may be edited by the caller)."""
    rng = np.random.default_rng(0)
    shape = (frames, rows, columns) if frames > 1 else (rows, columns)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-9"
    ds.set_pixel_data(rng.integers(0, 256, size=shape).astype(np.uint8), "MONOCHROME2", 8)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict]]:
    code = main(["inspect", "--json", *args])
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines()]


def test_json_for_the_pydicom_ultrasound_examples(capsys: pytest.CaptureFixture[str]) -> None:
    code, records = run_json(capsys, *(example(n) for n in EXAMPLES))
    assert code == 0
    assert [Path(r["path"]).name for r in records] == EXAMPLES
    facts = {Path(r["path"]).name: r for r in records}
    expected = {  # frames, rows, columns, photometric, crop source
        "examples_ybr_color.dcm": (30, 240, 320, "YBR_FULL_422", "heuristic"),
        "examples_palette.dcm": (1, 350, 800, "PALETTE COLOR", "heuristic"),
        "examples_rgb_color.dcm": (1, 240, 320, "RGB", "heuristic"),
        "examples_jpeg2k.dcm": (1, 480, 640, "YBR_RCT", "heuristic"),
        "ExplVR_BigEnd.dcm": (1, 60, 80, "RGB", "none"),
    }
    for name, (frames, rows, columns, photometric, source) in expected.items():
        r = facts[name]
        assert r["status"] == "ok" and r["error"] is None
        assert r["kind"] == "dicom" and r["modality"] == "US"
        assert (r["frames"], r["rows"], r["columns"]) == (frames, rows, columns)
        assert r["photometric"] == photometric
        assert r["would_score"] is True and r["skip_reason"] is None
        assert r["crop"]["source"] == source
        assert set(r["crop"]) == {"x0", "y0", "x1", "y1", "source"}
        assert 0 <= r["crop"]["x0"] <= r["crop"]["x1"] < columns
        assert 0 <= r["crop"]["y0"] <= r["crop"]["y1"] < rows
        assert r["selected_frames"] == (
            [0] if frames == 1 else [0, 2, 4, 6, 8, 10, 12, 14, 15, 17, 19, 21, 23, 25, 27, 29]
        )
        assert r["metadata"]["manufacturer"]
        assert r["transfer_syntax"]
    assert facts["examples_ybr_color.dcm"]["notes"]  # its region does not fit the frame
    assert facts["ExplVR_BigEnd.dcm"]["crop"] == {
        "x0": 0,
        "y0": 0,
        "x1": 79,
        "y1": 59,
        "source": "none",
    }


def bad_inputs(folder: Path) -> dict[str, Path]:
    """One file per bad input of the issue, in a folder with awkward names."""
    files: dict[str, Path] = {}
    (folder / "zero bytes.dcm").write_bytes(b"")
    files["zero"] = folder / "zero bytes.dcm"
    (folder / "random.dcm").write_bytes(bytes(range(256)) * 16)
    files["random"] = folder / "random.dcm"
    cut = dicom(folder / "cut.dcm", rows=64, columns=64)
    cut.write_bytes(cut.read_bytes()[:-500])
    files["cut"] = cut
    report = Dataset()
    report.file_meta = FileMetaDataset()
    report.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    report.SOPInstanceUID = generate_uid()
    report.Modality = "SR"
    report.file_meta.MediaStorageSOPClassUID = report.SOPClassUID
    report.file_meta.MediaStorageSOPInstanceUID = report.SOPInstanceUID
    report.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.1")
    report.save_as(folder / "report.dcm", enforce_file_format=True)
    files["report"] = folder / "report.dcm"
    huge = dicom(folder / "huge.dcm")
    from pydicom import dcmread

    ds = dcmread(huge)
    ds.Rows = ds.Columns = 60000
    ds.save_as(huge)
    files["huge"] = huge
    many = dicom(folder / "many.dcm")
    ds = dcmread(many)
    ds.NumberOfFrames = 10000
    ds.save_as(many)
    files["frames"] = many
    video = dicom(folder / "video.dcm")
    ds = dcmread(video)
    ds.file_meta.TransferSyntaxUID = UID("1.2.840.10008.1.2.4.102")
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(100)])
    ds.save_as(video)
    files["syntax"] = video
    short = dicom(folder / "short.dcm")
    ds = dcmread(short)
    ds.PixelData = bytes(ds.PixelData)[:-40]
    ds.save_as(short)
    files["length"] = short
    png = folder / "huge.png"
    Image.new("L", (8, 8)).save(png)
    data = bytearray(png.read_bytes())
    data[16:24] = (100_000).to_bytes(4, "big") * 2  # IHDR width and height
    import zlib

    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    png.write_bytes(bytes(data))
    files["png"] = png
    (folder / "a folder").mkdir()
    files["directory"] = folder / "a folder"
    (folder / "dangling.dcm").symlink_to(folder / "missing.dcm")
    files["symlink"] = folder / "dangling.dcm"
    return files


EXPECTED_WORDS = {
    "zero": "empty",
    "random": "not a DICOM, PNG or JPEG",
    "cut": "cut short",
    "report": "holds no image",
    "huge": "USQA_MAX_PIXELS",
    "frames": "USQA_MAX_FRAMES",
    "syntax": "MPEG-4",
    "length": "disagree",
    "png": "before decoding",
    "directory": "is a folder",
    "symlink": "dangling",
}


def test_every_bad_input_gives_one_error_line_and_the_next_file_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "drop zone é"
    folder.mkdir()
    files = bad_inputs(folder)
    good = dicom(folder / "good scan ñ 日本.dcm")
    args: list[str] = []
    for path in files.values():
        args += [str(path), str(good)]
    code, records = run_json(capsys, *args)
    assert code == 1
    assert len(records) == 2 * len(files)
    for (label, path), bad, ok in zip(files.items(), records[::2], records[1::2], strict=True):
        assert bad["status"] == "error", label
        assert bad["path"] == str(path)
        assert str(path) in bad["error"] and "\n" not in bad["error"]
        assert EXPECTED_WORDS[label] in bad["error"], (label, bad["error"])
        assert ok["status"] == "ok" and ok["path"] == str(good)


def test_unreadable_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = dicom(tmp_path / "locked.dcm")
    real_open = Path.open

    def refuse(self: Path, *args: object, **kwargs: object) -> object:
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", refuse)
    code, records = run_json(capsys, str(path), example("examples_rgb_color.dcm"))
    assert code == 1
    assert records[0]["status"] == "error" and "permission denied" in records[0]["error"]
    assert records[1]["status"] == "ok"


def test_text_mode_one_line_per_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    code = main(["inspect", example("examples_ybr_color.dcm"), str(empty)])
    captured = capsys.readouterr()
    assert code == 1
    out, err = captured.out.splitlines(), captured.err.splitlines()
    assert len(out) == 1 and "30 frame(s) of 320 x 240" in out[0] and "heuristic" in out[0]
    assert len(err) == 1 and err[0].startswith(str(empty)) and "empty" in err[0]


def test_other_modality_would_not_be_scored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, (record,) = run_json(capsys, str(dicom(tmp_path / "ct.dcm", modality="CT")))
    assert code == 0
    assert record["status"] == "ok" and record["would_score"] is False
    assert "modality CT" in record["skip_reason"]
    code, (record,) = run_json(capsys, "--modalities", "US,CT", str(tmp_path / "ct.dcm"))
    assert record["would_score"] is True


def test_frames_and_crop_flags(capsys: pytest.CaptureFixture[str]) -> None:
    code, (record,) = run_json(
        capsys, "--frames-to-score", "3", "--no-crop", example("examples_ybr_color.dcm")
    )
    assert code == 0
    assert record["selected_frames"] == [0, 14, 29]  # 0, 14.5 rounds to even, 29
    assert record["crop"] is None


def test_preview_pngs_with_the_box(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "previews"
    other = tmp_path / "other dir"
    other.mkdir()
    same_name = other / "examples_rgb_color.dcm"
    same_name.write_bytes(Path(example("examples_rgb_color.dcm")).read_bytes())
    odd = tmp_path / "scan één 1.dcm"
    dicom(odd)
    code, records = run_json(
        capsys, "--preview", str(out), *(example(n) for n in EXAMPLES), str(same_name), str(odd)
    )
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [*(f"{n}.png" for n in EXAMPLES), "examples_rgb_color.dcm-2.png", "scan_n_1.dcm.png"]
    )
    for record in records:
        preview = Path(record["preview"])
        assert preview.parent == out
        with Image.open(preview) as im:
            pixels = np.asarray(im.convert("RGB"))
        assert pixels.shape[:2] == (record["rows"], record["columns"])
        crop = record["crop"]
        assert tuple(pixels[crop["y0"], crop["x0"]]) == (0, 255, 0)
        assert tuple(pixels[crop["y1"], crop["x1"]]) == (0, 255, 0)


def test_preview_names_are_safe_and_unique() -> None:
    taken: set[str] = set()
    assert preview_name(Path("/x/../..//etc/passwd"), taken) == "passwd.png"
    assert preview_name(Path("/y/passwd"), taken) == "passwd-2.png"
    assert preview_name(Path(".hidden scan.dcm"), taken) == "hidden_scan.dcm.png"
    assert preview_name(Path("日本"), taken) == "_.png"
    assert preview_name(Path("..."), taken) == "file.png"


@pytest.mark.parametrize(
    "args",
    [["inspect"], ["inspect", "--frames-to-score", "-1", "x.dcm"], ["inspect", "--bogus", "x.dcm"]],
    ids=["no-files", "negative-frames", "unknown-flag"],
)
def test_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    capsys.readouterr()


def test_preview_folder_that_is_a_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "not a folder"
    blocker.write_text("x")
    assert (
        main(["inspect", "--preview", str(blocker / "sub"), example("examples_rgb_color.dcm")]) == 2
    )
    assert "cannot create the folder" in capsys.readouterr().err


def test_console_script_never_prints_a_traceback(tmp_path: Path) -> None:
    files = bad_inputs(tmp_path)
    args = [str(p) for p in files.values()] + [example("examples_palette.dcm")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "inspect", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.splitlines()) == len(files)
    assert len(result.stdout.splitlines()) == 1 and "examples_palette.dcm" in result.stdout

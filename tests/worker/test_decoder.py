"""The decoder child process: headers and frames, errors by class, crashes and timeouts."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from usqa_files import write_png

from worker.decoder import Decoder, DecoderCrashedError, read_options
from worker.errors import DecodeTimeoutError, UnreadableFileError, UnsupportedFileError
from worker.settings import load_settings

CINE = str(get_testdata_file("examples_ybr_color.dcm"))


@pytest.fixture
def decoder() -> Decoder:
    d = Decoder.from_settings(load_settings(environ={}))
    yield d
    d.close()


def test_header_and_frames_come_back_as_the_reader_gives_them(
    decoder: Decoder, tmp_path: Path
) -> None:
    from dicom_io import ReadOptions, read

    header = decoder.open(CINE)
    frames = list(decoder.frames())
    direct = read(CINE, ReadOptions())
    expected = list(direct.iter_frames())
    assert header.kind == "dicom" and header.frame_count == 30
    assert header.selected_frames == direct.selected_frames
    assert header.metadata["sop_instance_uid"] == direct.metadata["sop_instance_uid"]
    assert [i for i, _ in frames] == [i for i, _ in expected]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(frames, expected, strict=True))
    assert decoder.last_crop == direct.crop.as_dict()
    png = write_png(tmp_path / "a.png", seed=1)
    assert decoder.open(str(png)).kind == "image"
    [(index, frame)] = list(decoder.frames())
    assert index == 0 and frame.shape == (64, 80) and frame.dtype == np.uint8


def test_reader_errors_keep_their_class_and_message(decoder: Decoder, tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError, match=r"missing\.dcm"):
        decoder.open(str(tmp_path / "missing.dcm"))
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not an image" * 50)
    with pytest.raises(UnsupportedFileError, match=r"junk\.bin"):
        decoder.open(str(junk))
    pid = decoder.pid
    assert decoder.open(CINE).kind == "dicom"  # the same child goes on working
    assert decoder.pid == pid


def test_a_crash_is_reported_and_the_next_file_gets_a_fresh_child(decoder: Decoder) -> None:
    decoder.open(CINE)
    first = decoder.pid
    assert first is not None
    os.kill(first, signal.SIGSEGV)
    with pytest.raises(DecoderCrashedError, match="SIGSEGV"):
        list(decoder.frames())
    assert decoder.open(CINE).kind == "dicom"
    assert decoder.pid not in (None, first)


def test_a_file_past_the_time_limit_is_a_decode_timeout(tmp_path: Path) -> None:
    settings = load_settings({"decode_timeout": 0.001}, environ={})
    decoder = Decoder.from_settings(settings)
    try:
        with pytest.raises(DecodeTimeoutError, match="USQA_DECODE_TIMEOUT"):
            decoder.open(CINE)
            list(decoder.frames())
        assert decoder.pid is None  # the stuck child was killed
        decoder.timeout = 30.0
        assert decoder.open(CINE).kind == "dicom"
    finally:
        decoder.close()


def test_an_abandoned_frame_stream_does_not_leak_into_the_next_file(
    decoder: Decoder, tmp_path: Path
) -> None:
    decoder.open(CINE)
    stream = decoder.frames()
    next(stream)
    stream.close()
    png = write_png(tmp_path / "b.png", seed=2)
    assert decoder.open(str(png)).kind == "image"
    assert len(list(decoder.frames())) == 1


def test_options_follow_the_settings() -> None:
    options = read_options(load_settings({"frames_to_score": 3, "crop": False}, environ={}))
    assert options["frames_to_score"] == 3 and options["crop"] is False
    assert options["modalities"] == ["US"]

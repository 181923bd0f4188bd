"""The decoder child process: headers and frames, errors by class, crashes and timeouts."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from model.preprocess import Preprocess
from tests.helpers.files import write_png
from worker.decoding import Decoder, read_options
from worker.errors import (
    DecoderCrashedError,
    DecodeTimeoutError,
    UnreadableFileError,
    UnsupportedFileError,
)
from worker.settings import load_settings

CINE = str(get_testdata_file("examples_ybr_color.dcm"))


@pytest.fixture
def decoder() -> Iterator[Decoder]:
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
    assert direct.crop is not None and decoder.last_crop == direct.crop.as_dict()
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


def test_time_the_caller_holds_a_frame_is_not_the_files_decode_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cine whose frames wait for a slow inference (the read-ahead full) keeps its whole
    budget: the clock runs only while the parent waits for the child."""
    import worker.decoding.client as module

    skew = [0.0]
    clock = SimpleNamespace(monotonic=lambda: time.monotonic() + skew[0])
    monkeypatch.setattr(module, "time", clock)
    decoder = Decoder.from_settings(load_settings({"decode_timeout": 20.0}, environ={}))
    try:
        header = decoder.open(CINE, frames=True)
        got = 0
        for _ in decoder.frames():
            skew[0] += 15.0  # the caller holds each frame 15 s, far past the 20 s budget
            got += 1
        assert got == len(header.selected_frames) > 2
    finally:
        decoder.close()


def test_the_childs_start_up_is_not_the_next_files_decode_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A child slow to start (imports on a busy machine, a restart after a crash) leaves the
    next file its whole budget: the budget starts when the child says it is ready."""
    import worker.decoding.client as module

    skew = [0.0]
    monkeypatch.setattr(
        module, "time", SimpleNamespace(monotonic=lambda: time.monotonic() + skew[0])
    )
    ready = module.Decoder._await_ready

    def slow_start(self: Decoder) -> None:
        ready(self)
        skew[0] += 25.0  # the start-up took 25 s of the clock

    monkeypatch.setattr(module.Decoder, "_await_ready", slow_start)
    decoder = Decoder.from_settings(load_settings({"decode_timeout": 20.0}, environ={}))
    try:
        for _ in range(2):  # the first start, then a fresh child (as after a crash)
            header = decoder.open(CINE, frames=True)
            assert len(list(decoder.frames())) == len(header.selected_frames)
            decoder.close()
    finally:
        decoder.close()


def test_an_abandoned_frame_stream_does_not_leak_into_the_next_file(
    decoder: Decoder, tmp_path: Path
) -> None:
    decoder.open(CINE)
    stream = cast(Generator[tuple[int, np.ndarray], None, None], decoder.frames())
    next(stream)
    stream.close()
    png = write_png(tmp_path / "b.png", seed=2)
    assert decoder.open(str(png)).kind == "image"
    assert len(list(decoder.frames())) == 1


def test_frames_asked_for_with_the_header_come_without_a_second_request(
    decoder: Decoder, tmp_path: Path
) -> None:
    from dicom_io import ReadOptions, read

    expected = list(read(CINE, ReadOptions()).iter_frames())
    header = decoder.open(CINE, frames=True)
    pid = decoder.pid
    got = list(decoder.frames())
    assert header.frame_count == 30 and len(got) == len(expected)
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(got, expected, strict=True))
    assert decoder.last_crop is not None
    # a skipped file sends its header only: the pipe stays in step, same child
    skipped = decoder.open(str(get_testdata_file("CT_small.dcm")), frames=True)
    assert skipped.skip_reason and "modality CT" in skipped.skip_reason
    png = write_png(tmp_path / "a.png", seed=1)
    assert decoder.open(str(png), frames=True).kind == "image"
    assert [i for i, _ in decoder.frames()] == [0]
    assert decoder.pid == pid
    # frames asked for and never taken: the next file gets a fresh child, not stale frames
    decoder.open(CINE, frames=True)
    assert decoder.open(str(png), frames=True).kind == "image"
    [(index, frame)] = list(decoder.frames())
    assert index == 0 and frame.shape == (64, 80)
    assert decoder.pid != pid


def test_options_follow_the_settings() -> None:
    options = read_options(load_settings({"frames_to_score": 3, "crop": False}, environ={}))
    assert options["frames_to_score"] == 3 and options["crop"] is False
    assert options["modalities"] == ["US"]


SMALL = Preprocess(size=96).to_dict()  # not the default size: the preset in use shows


def _one_frame(decoder: Decoder, path: Path) -> np.ndarray:
    decoder.open(str(path))
    [(index, frame)] = list(decoder.frames())
    assert index == 0
    return frame


def test_a_preset_set_before_the_start_gives_model_ready_images(
    decoder: Decoder, tmp_path: Path
) -> None:
    from dicom_io import ReadOptions, read

    png = write_png(tmp_path / "rgb.png", seed=3, size=(48, 72, 3))
    [(_, raw)] = list(read(str(png), ReadOptions()).iter_frames())
    assert raw.shape == (48, 72, 3)
    decoder.set_preprocess(SMALL)
    assert decoder.pid is None and decoder.preprocess == SMALL
    image = _one_frame(decoder, png)
    assert image.shape == (96, 96) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, Preprocess.from_dict(SMALL).image(raw))
    decoder.set_preprocess(None)  # frames as decoded again, from the same child
    pid = decoder.pid
    np.testing.assert_array_equal(_one_frame(decoder, png), raw)
    assert decoder.pid == pid


def test_a_preset_set_while_the_child_runs_reaches_it_without_a_restart(
    decoder: Decoder, tmp_path: Path
) -> None:
    png = write_png(tmp_path / "rgb.png", seed=4, size=(50, 30, 3))
    raw = _one_frame(decoder, png)
    assert raw.shape == (50, 30, 3)
    pid = decoder.pid
    decoder.set_preprocess(SMALL)
    image = _one_frame(decoder, png)
    np.testing.assert_array_equal(image, Preprocess.from_dict(SMALL).image(raw))
    default = Preprocess().to_dict()
    decoder.set_preprocess(default)
    image = _one_frame(decoder, png)
    assert image.shape == (256, 256) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, Preprocess().image(raw))
    decoder.set_preprocess(None)
    np.testing.assert_array_equal(_one_frame(decoder, png), raw)
    assert decoder.pid == pid


def test_setting_the_same_preset_again_is_a_no_op(decoder: Decoder) -> None:
    decoder.set_preprocess(SMALL)
    decoder.open(CINE)
    pid = decoder.pid
    stream = decoder.frames()
    first = next(stream)
    decoder.set_preprocess(dict(SMALL))  # equal: the frame stream in flight goes on
    rest = list(stream)
    assert decoder.pid == pid
    frames = [first, *rest]
    assert len(frames) == 16 and all(f.shape == (96, 96) for _, f in frames)


def test_a_new_preset_during_a_frame_stream_restarts_the_child_with_it(
    decoder: Decoder, tmp_path: Path
) -> None:
    decoder.open(CINE)
    pid = decoder.pid
    next(decoder.frames())  # the reply stream is left half-way
    decoder.set_preprocess(SMALL)
    png = write_png(tmp_path / "rgb.png", seed=5, size=(40, 70, 3))
    assert _one_frame(decoder, png).shape == (96, 96)
    assert decoder.pid not in (None, pid)


def test_the_decoder_child_does_not_load_torch(decoder: Decoder, tmp_path: Path) -> None:
    decoder.set_preprocess(Preprocess().to_dict())
    png = write_png(tmp_path / "rgb.png", seed=6, size=(40, 70, 3))
    assert _one_frame(decoder, png).shape == (256, 256)  # the preprocessing ran in the child
    maps = Path(f"/proc/{decoder.pid}/maps").read_text()
    assert "libtorch" not in maps and "libc" in maps


def test_the_child_runs_at_the_lower_priority_asked_for(tmp_path: Path) -> None:
    png = write_png(tmp_path / "a.png", 1)
    for steps in (0, 7):
        child = Decoder(read_options(load_settings({}, environ={})), 30.0, nice=steps)
        try:
            child.open(str(png))
            list(child.frames())
            assert child.pid is not None
            assert os.getpriority(os.PRIO_PROCESS, child.pid) == os.getpriority(
                os.PRIO_PROCESS, 0
            ) + min(steps, 19 - os.getpriority(os.PRIO_PROCESS, 0))
        finally:
            child.close()


def test_the_child_decodes_on_one_thread(
    decoder: Decoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No spinning BLAS threads beside the inference streams, whatever the operator set
    for inference."""
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    decoder.set_preprocess(Preprocess().to_dict())
    png = write_png(tmp_path / "rgb.png", seed=6, size=(300, 280, 3))
    _one_frame(decoder, png)  # grey conversion and the border heuristic ran
    assert decoder.pid is not None
    assert len(list(Path(f"/proc/{decoder.pid}/task").iterdir())) == 1

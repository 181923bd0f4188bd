"""The read-ahead thread: order, bounds, errors and abandoning a batch."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from worker.scoring.readahead import Emit, Ended, Frame, Lane, ReadAhead

pytestmark = pytest.mark.fast  # no service, no data, no model


def _frames(item: int, emit: Emit) -> int:
    for index in range(3):
        emit(index, np.full((2, 2), item, dtype=np.uint8))
    return item * 10


def test_events_come_in_order_with_each_files_result() -> None:
    with ReadAhead([1, 2], _frames, frames_ahead=2) as reader:
        events = list(reader)
    assert [(type(e).__name__, e.item) for e in events] == [
        ("Frame", 1),
        ("Frame", 1),
        ("Frame", 1),
        ("Ended", 1),
        ("Frame", 2),
        ("Frame", 2),
        ("Frame", 2),
        ("Ended", 2),
    ]
    ended = [e for e in events if isinstance(e, Ended)]
    assert [e.result for e in ended] == [10, 20]
    frames = [e for e in events if isinstance(e, Frame)]
    assert [int(f.frame[0, 0]) for f in frames] == [1, 1, 1, 2, 2, 2]


def test_reading_ahead_is_bounded_by_files() -> None:
    started: list[int] = []

    def read(item: int, emit: Emit) -> int:
        started.append(item)
        return item

    with ReadAhead(list(range(10)), read, frames_ahead=100, files_ahead=2) as reader:
        time.sleep(0.3)  # the consumer has taken nothing yet
        assert started == [0, 1]
        assert [e.item for e in reader] == list(range(10))


def test_an_error_the_reader_lets_out_is_raised_in_the_consumer() -> None:
    def read(item: int, emit: Emit) -> int:
        raise RuntimeError(f"broken {item}")

    with ReadAhead([7], read, frames_ahead=1) as reader, pytest.raises(RuntimeError, match="7"):
        list(reader)


def test_closing_an_abandoned_batch_stops_a_reader_that_waits() -> None:
    release = threading.Event()
    aborted: list[bool] = []

    def read(item: int, emit: Emit) -> int:
        emit(0, np.zeros((1, 1), dtype=np.uint8))
        release.wait(10)  # a decoder that does not answer
        return item

    def abort() -> None:
        aborted.append(True)
        release.set()

    started = time.monotonic()
    with pytest.raises(KeyError), ReadAhead([1, 2], read, frames_ahead=1, abort=abort) as reader:
        for _ in reader:
            raise KeyError("the consumer gives up")
    assert aborted == [True]
    assert time.monotonic() - started < 5


def test_a_hung_file_hands_the_rest_of_the_batch_to_a_spare_lane() -> None:
    release = threading.Event()
    released: list[str] = []

    def read(item: int, emit: Emit) -> int:
        if item == 0:
            assert release.wait(30), "never released"
        emit(0, np.full((1, 1), item, dtype=np.uint8))
        return item

    def spare() -> Lane[int, int]:
        return Lane(read, release=lambda: released.append("spare"))

    ended: list[int] = []
    with ReadAhead(
        [0, 1, 2, 3], read, frames_ahead=8, files_ahead=8, spare=spare, stall_after=0.2
    ) as reader:
        for event in reader:
            if isinstance(event, Ended):
                ended.append(event.item)
                if sorted(ended) == [1, 2, 3]:
                    release.set()  # the hung file answers only once the others are through
        assert reader.lanes == 2
    assert ended == [1, 2, 3, 0]
    assert released == ["spare"]


def test_a_file_that_keeps_sending_frames_takes_no_spare_lane() -> None:
    asked: list[bool] = []

    def read(item: int, emit: Emit) -> int:
        for index in range(10):
            time.sleep(0.05)  # slow, but never silent for stall_after
            emit(index, np.zeros((1, 1), dtype=np.uint8))
        return item

    def spare() -> None:
        asked.append(True)

    with ReadAhead([0, 1], read, frames_ahead=4, spare=spare, stall_after=0.4) as reader:
        assert [e.item for e in reader if isinstance(e, Ended)] == [0, 1]
        assert reader.lanes == 1
    assert asked == []


def test_no_spare_lane_is_opened_for_the_last_file() -> None:
    asked: list[bool] = []

    def read(item: int, emit: Emit) -> int:
        if item == 1:
            time.sleep(0.6)  # stuck, but nothing waits behind it
        return item

    def spare() -> None:
        asked.append(True)

    with ReadAhead([0, 1], read, frames_ahead=4, spare=spare, stall_after=0.1) as reader:
        assert [e.item for e in reader] == [0, 1]
    assert asked == []

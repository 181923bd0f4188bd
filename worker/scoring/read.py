"""Reading a batch's files: each file checked, its header read and its frames decoded in
the decoder child (through the read-ahead lanes), while the inference queue scores what
is ready."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from db import ledger
from db.models import FAILED, SKIPPED
from dicom_io.messages import first_line, stalled
from dicom_io.record import ScanHeader
from worker.decoding import Decoder
from worker.errors import (
    FileUnavailableError,
    InputError,
    ModelError,
    ScanRetryError,
    SkipScan,
    TransientError,
)
from worker.ops import metrics
from worker.scoring.context import ScoringContext
from worker.scoring.inference import InferenceQueue
from worker.scoring.readahead import Emit, Frame, Idle, Lane, ReadAhead, Stopped
from worker.scoring.work import FileRead, ScanWork

__all__ = ["read_and_score"]

log = logging.getLogger(__name__)

_EARLY_BATCH = 4  # frames worth scoring while the decoder is still busy
_IDLE_SECONDS = 0.5  # the reader silent this long: score what waits, write what is finished
_SPARE_AFTER = 5.0  # stuck this long in one file: the rest of the batch takes a spare decoder
# stopping, and a file has sent nothing for this long: it is stuck (hung or a dead share),
# not merely slow (a slow file sends frames), so the stop does not wait for it
_GIVE_UP_AFTER = 10.0


def header_columns(header: ScanHeader) -> dict[str, Any]:
    columns = ledger.metadata_columns(header.metadata or {})
    columns.update(
        kind=header.kind,
        rows=header.rows,
        columns=header.columns,
        frame_count=header.frame_count,
        samples_per_pixel=header.samples_per_pixel,
    )
    return columns


def crop_columns(crop: dict[str, Any] | None) -> dict[str, Any]:
    if not crop:
        return {}
    return {
        "crop_x0": crop.get("x0"),
        "crop_y0": crop.get("y0"),
        "crop_x1": crop.get("x1"),
        "crop_y1": crop.get("y1"),
        "crop_source": crop.get("source"),
    }


def read_file(
    work: ScanWork, decoder: Decoder, reraise: tuple[type[BaseException], ...], emit: Emit
) -> FileRead:
    """Check the file, read its header and emit its frames (in the read-ahead thread); any
    problem becomes the scan's outcome (or a crash mark for a retry)."""
    scan = work.scan
    read = FileRead()
    started = time.perf_counter()
    # a re-scored scan's file may have been moved to done/ after its first outcome
    location = ledger.file_location(scan) or scan.path
    try:
        try:
            st = Path(location).stat()
        except OSError as exc:
            if stalled(exc):  # a stalling share: this scan is tried again later
                raise FileUnavailableError(
                    f"{location}: the storage did not answer ({exc.strerror}); retried later"
                ) from exc
            raise InputError(
                f"{location}: the file is gone or unreadable ({exc.strerror}); it was moved "
                "or deleted before it was scored"
            ) from exc
        if st.st_size != scan.size_bytes or st.st_mtime_ns != scan.mtime_ns:
            raise SkipScan(
                f"{location}: the file changed after it was received ({scan.size_bytes} -> "
                f"{st.st_size} bytes); its new content is recorded as a new scan"
            )
        header = decoder.open(location, frames=True)
        read.columns = header_columns(header)
        if header.skip_reason:
            raise SkipScan(header.skip_reason)
        frames = 0
        for index, frame in decoder.frames():
            emit(index, frame)
            frames += 1
        read.columns.update(crop_columns(decoder.last_crop))
        if frames == 0:
            raise InputError(f"{scan.path}: no frame was selected for scoring")
    except (ScanRetryError, FileUnavailableError) as exc:  # retried, up to the cap
        read.crashed = str(exc)
        read.reason_class = metrics.reason_class(exc)
    except SkipScan as exc:
        read.outcome = ledger.Outcome(SKIPPED, str(exc))
        read.reason_class = metrics.reason_class(exc, status=SKIPPED)
    except InputError as exc:
        read.outcome = ledger.Outcome(FAILED, str(exc))
        read.reason_class = metrics.reason_class(exc)
    except Stopped:
        raise
    except Exception as exc:  # a bug or an unforeseen file: this scan fails, not the batch
        if isinstance(exc, (TransientError, ModelError, *reraise)):
            raise
        log.exception("unexpected error while reading scan %d", scan.id)
        read.outcome = ledger.Outcome(
            FAILED,
            f"{scan.path}: could not be read ({first_line(exc)})",
        )
    read.seconds = time.perf_counter() - started
    return read


def apply_read(work: ScanWork, read: FileRead, waited: float, inference: InferenceQueue) -> None:
    """Record on ``work`` what reading its file found (main thread)."""
    if read.columns:
        work.columns = read.columns
    work.decode_ms = max(0.0, read.seconds - waited) * 1000.0
    if read.outcome is not None or read.crashed is not None:
        inference.drop(work)
        work.outcome = read.outcome
        work.crashed = read.crashed
        work.reason_class = read.reason_class


def spare_lane(
    context: ScoringContext, reraise: tuple[type[BaseException], ...]
) -> Lane[ScanWork, FileRead] | None:
    """A lane on a spare decoder child, or None when the process has none free."""
    decoder = context.spare_decoder()
    if decoder is None:
        return None
    return Lane(
        lambda work, emit: read_file(work, decoder, reraise, emit),
        decoder.abort,
        lambda: context.return_spare(decoder),
    )


def give_up(works: list[ScanWork], ended: list[ScanWork], inference: InferenceQueue) -> None:
    """The process is stopping and a file is stuck in its decoder: every scan whose file
    is not read yet goes back to ``queued`` (scored again by the next worker or start)."""
    done = {id(w) for w in ended}
    for work in works:
        if id(work) not in done and work.outcome is None and work.crashed is None:
            inference.drop(work)
            work.interrupted = True
    log.warning(
        "stopping: %d scan(s) of this batch not read yet go back to the queue",
        sum(w.interrupted for w in works),
    )


def read_and_score(
    works: list[ScanWork],
    context: ScoringContext,
    inference: InferenceQueue,
    reraise: tuple[type[BaseException], ...],
    finished: Callable[[list[ScanWork]], None] = lambda _: None,
) -> None:
    """Decode the files in a read-ahead thread while the streams score what is ready: a
    full batch at once, a smaller one (at least ``_EARLY_BATCH`` frames) whenever the
    decoder has nothing ready and a stream is free, so neither waits for the other longer
    than it must. The reader may run a batch ahead of every stream (``batch_size`` x
    (streams + 1) frames, whatever the number of files they come from), so it keeps
    decoding while every stream is busy.

    A slow or hung file holds back neither the files behind it nor the results before
    it: after ``_SPARE_AFTER`` seconds stuck in one file, the rest of the batch is read by
    a spare decoder child; and while a file is stuck (``_IDLE_SECONDS``), what is read is
    scored and the works that are done are handed to ``finished`` (written now)."""
    early = min(inference.size, _EARLY_BATCH)
    ahead = inference.size * (inference.streams + 1)
    with (
        context.decoder() as decoder,
        ReadAhead[ScanWork, FileRead](
            works,
            lambda work, emit: read_file(work, decoder, reraise, emit),
            frames_ahead=ahead,
            files_ahead=ahead,
            abort=decoder.abort,
            spare=lambda: spare_lane(context, reraise),
            stall_after=_SPARE_AFTER,
        ) as reader,
    ):
        ended: list[ScanWork] = []
        written_at = time.monotonic()
        for event in reader.events(idle=_IDLE_SECONDS):
            if context.stopping.is_set() and reader.stalled(_GIVE_UP_AFTER):
                give_up(works, ended, inference)
                break
            if isinstance(event, Frame):
                inference.add(event.item, event.index, event.frame)
            elif not isinstance(event, Idle):
                apply_read(event.item, event.result, event.waited, inference)
                ended.append(event.item)
            if isinstance(event, Idle) or (
                ended
                and reader.stalled(_IDLE_SECONDS)
                and time.monotonic() - written_at >= _IDLE_SECONDS
            ):
                inference.flush()
                held = inference.holds()
                done = [w for w in ended if id(w) not in held]
                if done:
                    ended = [w for w in ended if id(w) in held]
                    finished(done)
                written_at = time.monotonic()
                continue
            if len(inference.pending) >= early and not reader.pending() and inference.idle_stream:
                inference.flush()
    inference.finish()

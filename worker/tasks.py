"""``process_scans``: the one scoring path, used by the embedded runner and Celery alike.

For a batch of scan ids it claims the scans in the ledger, decodes each file in the
decoder child (time-limited), scores the frames of all the files together (so inference
batches across files), and writes one outcome per scan: ``scored`` (with its scores),
``skipped`` or ``failed`` with a reason. The batch is written in one transaction at its
end, unless a file is slow to decode: then what is finished is written (committed) at
once, while that file goes on decoding.

The error boundary: a problem with one file ends that scan (``failed``/``skipped`` with
the reason) and never touches the others; a decoder crash releases the scan for a later
retry until the attempt cap; a database that is unavailable, or a model that cannot load,
raises (:class:`~worker.errors.TransientError`/:class:`~worker.errors.ModelError`) and the
caller retries the whole batch with the same claim token.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

import db
from db import ledger, rescore
from db.models import FAILED, SCORED, SKIPPED, Scan, ScanScore
from dicom_io.messages import stalled
from worker import metrics
from worker.decoder import DecodedHeader, Decoder, DecoderCrashedError
from worker.errors import FileUnavailableError, InputError, ModelError, SkipScan, TransientError
from worker.pipeline import Pipeline

if TYPE_CHECKING:
    from model.scorer import Assessment
from worker.readahead import Emit, Frame, Idle, Lane, ReadAhead, Stopped

__all__ = ["RETRY", "BatchResult", "process_scans"]

log = logging.getLogger(__name__)

RETRY = "retry"
_EARLY_BATCH = 4  # frames worth scoring while the decoder is still busy
_IDLE_SECONDS = 0.5  # the reader silent this long: score what waits, write what is finished
_INTERRUPTED = "the worker stopped before this file was read; it is scored again"
_SPARE_AFTER = 5.0  # stuck this long in one file: the rest of the batch takes a spare decoder


@dataclass
class BatchResult:
    """What :func:`process_scans` did: the status written per scan id, the scans released
    for a later retry, and the ids it did not claim (already finished or held elsewhere)."""

    token: str
    statuses: dict[int, str] = field(default_factory=dict)
    retry: list[int] = field(default_factory=list)
    not_claimed: list[int] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(1 for s in self.statuses.values() if s == FAILED)


@dataclass
class _Work:
    """One claimed scan on its way through the batch."""

    scan: Scan
    columns: dict[str, Any] = field(default_factory=dict)
    frame_scores: list[tuple[int, float]] = field(default_factory=list)
    # per frame index: defect probabilities and not-ultrasound probability (None: no head)
    frame_defects: dict[int, np.ndarray] = field(default_factory=dict)
    frame_gate: dict[int, float] = field(default_factory=dict)
    outcome: ledger.Outcome | None = None
    crashed: str | None = None
    summary: Any = None
    decode_ms: float = 0.0
    inference_ms: float = 0.0
    frames: int = 0
    reason_class: str | None = None  # for the metrics: why it failed or was skipped
    interrupted: bool = False  # the process stopped before its file was read


def _printable(text: str) -> str:
    """``text`` with control characters shown as ``?`` (a log line stays one line)."""
    return "".join(c if c.isprintable() else "?" for c in text)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _header_columns(header: DecodedHeader) -> dict[str, Any]:
    columns = ledger.metadata_columns(header.metadata or {})
    columns.update(
        kind=header.kind,
        rows=header.rows,
        columns=header.columns,
        frame_count=header.frame_count,
        samples_per_pixel=header.samples_per_pixel,
    )
    return columns


def _crop_columns(crop: dict[str, Any] | None) -> dict[str, Any]:
    if not crop:
        return {}
    return {
        "crop_x0": crop.get("x0"),
        "crop_y0": crop.get("y0"),
        "crop_x1": crop.get("x1"),
        "crop_y1": crop.get("y1"),
        "crop_source": crop.get("source"),
    }


class _Inference:
    """Frames from several scans, scored in batches of ``batch_size`` as they arrive (so
    memory stays bounded however long a cine is). Up to ``scorer.streams`` batches run at
    once in the scorer's stream threads while this thread goes on reading; their scores are
    applied here, in submission order, so a :class:`_Work` is only changed by this thread."""

    def __init__(self, pipeline: Pipeline, reraise: tuple[type[BaseException], ...]) -> None:
        self.pipeline = pipeline
        self.reraise = reraise
        self.size = max(1, pipeline.settings.batch_size)
        self.streams = max(1, getattr(pipeline.scorer, "streams", 1))
        self.pending: list[tuple[_Work, int, np.ndarray]] = []
        self.running: deque[_Batch] = deque()

    @property
    def idle_stream(self) -> bool:
        """Whether a stream is free to take a batch now: one of ours is, and the scorer
        (shared by every batch this process scores at once) has one with nothing to do."""
        self._reap()
        idle = getattr(self.pipeline.scorer, "idle_streams", None)
        return len(self.running) < self.streams and (idle is None or idle > 0)

    def add(self, work: _Work, index: int, frame: np.ndarray) -> None:
        self.pending.append((work, index, frame))
        work.frames += 1
        if len(self.pending) >= self.size:
            self.flush()

    def drop(self, work: _Work) -> None:
        self.pending = [p for p in self.pending if p[0] is not work]

    def holds(self) -> set[int]:
        """``id()`` of the works with frames waiting or being scored."""
        self._reap()
        entries = [e for batch in self.running for e in batch.entries] + self.pending
        return {id(work) for work, _, _ in entries}

    def flush(self) -> None:
        """Start scoring what is pending (waiting for a free stream if all are busy)."""
        entries, self.pending = self.pending, []
        alive = [
            e
            for e in entries
            if e[0].outcome is None and e[0].crashed is None and not e[0].interrupted
        ]
        if not alive:
            return
        while len(self.running) >= self.streams:
            self._finish(self.running.popleft())
        frames = [frame for _, _, frame in alive]
        self.running.append(_Batch(alive, self.pipeline.scorer.submit(frames)))

    def finish(self) -> None:
        """Score what is pending and wait for every batch."""
        self.flush()
        while self.running:
            self._finish(self.running.popleft())

    def _reap(self) -> None:
        while self.running and self.running[0].future.done():
            self._finish(self.running.popleft())

    def _finish(self, batch: _Batch) -> None:
        try:
            result = batch.future.result()
        except Exception as exc:
            if isinstance(exc, (TransientError, ModelError, *self.reraise)):
                raise
            self._failed(batch.entries, exc)
            return
        self._apply(batch.entries, result, time.perf_counter() - batch.started)

    def _apply(
        self, entries: list[tuple[_Work, int, np.ndarray]], result: Assessment, seconds: float
    ) -> None:
        metrics.inference_done(seconds, len(entries))
        if len(result) != len(entries):
            raise ModelError(
                f"the scorer returned {len(result)} scores for {len(entries)} frames; "
                "the model package is inconsistent"
            )
        share = seconds * 1000.0 / len(entries)
        for row, (work, index, _) in enumerate(entries):
            work.frame_scores.append((index, float(result.scores[row])))
            if result.defects is not None:
                work.frame_defects[index] = result.defects[row]
            if result.not_ultrasound is not None:
                work.frame_gate[index] = float(result.not_ultrasound[row])
            work.inference_ms += share

    def _failed(self, entries: list[tuple[_Work, int, np.ndarray]], exc: Exception) -> None:
        """A batch could not be scored: score each scan's frames alone to find the one
        that breaks it; that scan fails, the others keep their scores."""
        owners = list(dict.fromkeys(id(w) for w, _, _ in entries))
        if len(owners) > 1:
            for owner in owners:
                mine = [e for e in entries if id(e[0]) == owner]
                started = time.perf_counter()
                try:
                    result = self.pipeline.scorer.assess([f for _, _, f in mine])
                except Exception as again:
                    if isinstance(again, (TransientError, ModelError, *self.reraise)):
                        raise
                    self._failed(mine, again)
                    continue
                self._apply(mine, result, time.perf_counter() - started)
            return
        work = entries[0][0]
        log.debug("scoring scan %d failed", work.scan.id, exc_info=exc)
        work.reason_class = "scoring"
        work.outcome = ledger.Outcome(
            FAILED, f"{work.scan.path}: its frames could not be scored ({_first_line(exc)})"
        )


@dataclass
class _Batch:
    """Frames handed to a stream, and the future of their scores."""

    entries: list[tuple[_Work, int, np.ndarray]]
    future: Future[Assessment]
    started: float = field(default_factory=time.perf_counter)


def _claim(pipeline: Pipeline, ids: Sequence[int], token: str) -> list[Scan]:
    """Claim the scans; those past the attempt cap are failed on the spot."""
    settings = pipeline.settings
    with db.session_scope(settings.database_url) as session:
        now = ledger.db_now(session)  # the database's clock judges staleness, not ours
        claimed = ledger.claim(
            session,
            ids,
            token=token,
            worker=pipeline.name,
            stale_before=ledger.age_cutoff(settings.stuck_seconds, now),
            dead_before=ledger.age_cutoff(pipeline.dead_after, now),
            now=now,
        )
        usable = []
        for scan in claimed:
            if scan.attempts > settings.max_attempts:
                last = scan.reason or (
                    "the process scoring it stopped before finishing (killed or crashed)"
                )
                reason = f"gave up after {settings.max_attempts} attempts; last problem: {last}"
                ledger.finish(session, scan.id, token, ledger.Outcome(FAILED, reason))
                _log_outcome(scan, FAILED, reason=reason)
                metrics.scan_finished(FAILED, reason="attempts", received_at=scan.received_at)
            else:
                usable.append(scan)
    return usable


@dataclass
class _Read:
    """What reading one file found (made in the read-ahead thread, applied by the main
    thread, so a :class:`_Work` is only ever changed by one thread)."""

    columns: dict[str, Any] = field(default_factory=dict)
    outcome: ledger.Outcome | None = None
    crashed: str | None = None
    reason_class: str | None = None
    seconds: float = 0.0


def _read(
    work: _Work, decoder: Decoder, reraise: tuple[type[BaseException], ...], emit: Emit
) -> _Read:
    """Check the file, read its header and emit its frames (in the read-ahead thread); any
    problem becomes the scan's outcome (or a crash mark for a retry)."""
    scan = work.scan
    read = _Read()
    started = time.perf_counter()
    # a re-scored scan's file may have been moved to done/ after its first outcome
    location = rescore.file_location(scan) or scan.path
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
        read.columns = _header_columns(header)
        if header.skip_reason:
            raise SkipScan(header.skip_reason)
        frames = 0
        for index, frame in decoder.frames():
            emit(index, frame)
            frames += 1
        read.columns.update(_crop_columns(decoder.last_crop))
        if frames == 0:
            raise InputError(f"{scan.path}: no frame was selected for scoring")
    except (DecoderCrashedError, FileUnavailableError) as exc:  # retried, up to the cap
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
            FAILED, f"{scan.path}: could not be read ({type(exc).__name__}: {_first_line(exc)})"
        )
    read.seconds = time.perf_counter() - started
    return read


def _apply(work: _Work, read: _Read, waited: float, inference: _Inference) -> None:
    """Record on ``work`` what reading its file found (main thread)."""
    if read.columns:
        work.columns = read.columns
    work.decode_ms = max(0.0, read.seconds - waited) * 1000.0
    if read.outcome is not None or read.crashed is not None:
        inference.drop(work)
        work.outcome = read.outcome
        work.crashed = read.crashed
        work.reason_class = read.reason_class


def _spare_lane(
    pipeline: Pipeline, reraise: tuple[type[BaseException], ...]
) -> Lane[_Work, _Read] | None:
    """A lane on a spare decoder child, or None when the process has none free."""
    decoder = pipeline.spare_decoder()
    if decoder is None:
        return None
    return Lane(
        lambda work, emit: _read(work, decoder, reraise, emit),
        decoder.abort,
        lambda: pipeline.return_spare(decoder),
    )


def _give_up(works: list[_Work], ended: list[_Work], inference: _Inference) -> None:
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


def _read_and_score(
    works: list[_Work],
    pipeline: Pipeline,
    inference: _Inference,
    reraise: tuple[type[BaseException], ...],
    finished: Callable[[list[_Work]], None] = lambda _: None,
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
        pipeline.decoder() as decoder,
        ReadAhead[_Work, _Read](
            works,
            lambda work, emit: _read(work, decoder, reraise, emit),
            frames_ahead=ahead,
            files_ahead=ahead,
            abort=decoder.abort,
            spare=lambda: _spare_lane(pipeline, reraise),
            stall_after=_SPARE_AFTER,
        ) as reader,
    ):
        ended: list[_Work] = []
        written_at = time.monotonic()
        for event in reader.events(idle=_IDLE_SECONDS):
            if pipeline.stopping.is_set() and reader.stalled(_IDLE_SECONDS):
                _give_up(works, ended, inference)
                break
            if isinstance(event, Frame):
                inference.add(event.item, event.index, event.frame)
            elif not isinstance(event, Idle):
                _apply(event.item, event.result, event.waited, inference)
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


def _known_scores(
    session: Session, version: str, works: Iterable[_Work]
) -> tuple[dict[str, Scan], dict[str, Scan]]:
    """Scans already scored by ``version`` with the same content / SOP instance."""
    shas = {w.scan.sha256 for w in works}
    uids = {w.columns.get("sop_instance_uid") for w in works} - {None}
    match: ColumnElement[bool] = ScanScore.sha256.in_(shas)
    if uids:
        match = or_(match, ScanScore.sop_instance_uid.in_(uids))
    by_sha: dict[str, Scan] = {}
    by_uid: dict[str, Scan] = {}
    rows = session.execute(
        select(Scan, ScanScore.sha256, ScanScore.sop_instance_uid)
        .join(ScanScore, ScanScore.scan_id == Scan.id)
        .where(ScanScore.model_version == version, match)
        .order_by(Scan.id)
    ).all()
    for scan, sha, uid in rows:
        by_sha.setdefault(sha, scan)
        if uid:
            by_uid.setdefault(uid, scan)
    return by_sha, by_uid


def _duplicate(scan: Scan, original: Scan, what: str) -> ledger.Outcome:
    return ledger.Outcome(
        SKIPPED,
        f"duplicate of scan {original.id} ({original.path}): same {what}, already scored by "
        "this model version",
        duplicate_of=original.id,
    )


def _write(pipeline: Pipeline, works: list[_Work], token: str, result: BatchResult) -> None:
    """One transaction for ``works`` (the batch, or the part of it that finished while a
    slow file still decodes): header columns, then every outcome. The scans to be
    scored are written together (a few statements for all of them); only if that
    meets a conflict (a duplicate scored meanwhile, a claim lost) are they written one by
    one, each in its own savepoint."""
    settings = pipeline.settings
    version = pipeline.model_version
    with db.session_scope(settings.database_url) as session:
        candidates = [
            w for w in works if w.outcome is None and w.crashed is None and not w.interrupted
        ]
        by_sha, by_uid = _known_scores(session, version, candidates) if candidates else ({}, {})
        ledger.update_columns(session, token, [(w.scan.id, w.columns) for w in works if w.columns])
        to_score: list[_Work] = []
        for work in works:
            scan = work.scan
            for key, value in work.columns.items():
                setattr(scan, key, value)
            if work.interrupted:
                if ledger.release(session, [scan.id], token, _INTERRUPTED):
                    result.retry.append(scan.id)
                    result.statuses[scan.id] = RETRY
                continue
            if work.crashed is not None and not _crash_outcome(
                session, work, token, settings.max_attempts, result
            ):
                continue
            if work.outcome is None and getattr(by_sha.get(scan.sha256), "id", None) == scan.id:
                # re-queued, but this version has scored it already (a worker still on the
                # old model after `usqa rescore`): its outcome stands, no second score
                if rescore.restore_scored(session, scan.id, token, version):
                    work.outcome = ledger.Outcome(
                        SCORED, f"already scored by model {version}; that score is kept"
                    )
                    result.statuses[scan.id] = SCORED
                else:
                    result.not_claimed.append(scan.id)
                continue
            if work.outcome is None:
                uid = work.columns.get("sop_instance_uid")
                original = by_sha.get(scan.sha256)
                what = "content"
                if (original is None or original.id == scan.id) and uid:
                    original, what = by_uid.get(uid), "SOP instance"
                if original is not None and original.id != scan.id:
                    work.outcome = _duplicate(scan, original, what)
            if work.outcome is None:
                _grade(pipeline, work)
            if work.outcome is None:
                to_score.append(work)  # later copies in this batch are its duplicates
                by_sha.setdefault(scan.sha256, scan)
                if scan.sop_instance_uid:
                    by_uid.setdefault(scan.sop_instance_uid, scan)
                continue
            if ledger.finish(session, scan.id, token, work.outcome, model_version=version):
                result.statuses[scan.id] = work.outcome.status
            else:
                result.not_claimed.append(scan.id)
        _write_scores(pipeline, session, to_score, token, result)


def _grade(pipeline: Pipeline, work: _Work) -> None:
    """The scan's summary (score, grade, defects), or its outcome: ``skipped`` when the
    gate says it is not ultrasound, ``failed`` when it cannot be graded."""
    indices = [i for i, _ in sorted(work.frame_scores)]
    defect_rows = [list(work.frame_defects[i]) for i in indices if i in work.frame_defects]
    gate = [work.frame_gate[i] for i in indices if i in work.frame_gate]
    try:
        work.summary = pipeline.grading.summarise(
            [s for _, s in sorted(work.frame_scores)],
            defect_rows if len(defect_rows) == len(indices) and defect_rows else None,
            gate if len(gate) == len(indices) and gate else None,
            pipeline.scorer.defect_names,
        )
    except InputError as exc:
        work.outcome = ledger.Outcome(FAILED, f"{work.scan.path}: {exc}")
        return
    if work.summary.skip_reason:
        work.outcome = ledger.Outcome(SKIPPED, work.summary.skip_reason)
        work.reason_class = "not_ultrasound"
        work.summary = None


def _crash_outcome(
    session: Session, work: _Work, token: str, max_attempts: int, result: BatchResult
) -> bool:
    """A scan whose decoder crashed: released for a retry (False: nothing more to write)
    or, at the attempt cap, given a ``failed`` outcome to write (True)."""
    scan = work.scan
    if scan.attempts >= max_attempts:
        work.outcome = ledger.Outcome(
            FAILED, f"{work.crashed}; failed after {scan.attempts} attempts"
        )
        return True
    reason = f"retrying (attempt {scan.attempts} of {max_attempts}): {work.crashed}"
    if ledger.release(session, [scan.id], token, reason):
        result.retry.append(scan.id)
        result.statuses[scan.id] = RETRY
        log.warning(
            "scan %d will be retried: %s",
            scan.id,
            _printable(work.crashed or ""),
            extra={"scan_id": scan.id, "status": RETRY},
        )
    return False


def _score_entry(work: _Work) -> ledger.ScoreEntry:
    return ledger.ScoreEntry(
        scan=work.scan,
        summary=work.summary,
        frame_scores=sorted(work.frame_scores),
        decode_ms=round(work.decode_ms, 2),
        inference_ms=round(work.inference_ms, 2),
    )


def _write_scores(
    pipeline: Pipeline, session: Session, works: list[_Work], token: str, result: BatchResult
) -> None:
    """Write the scores of ``works``: all at once, or one by one after a conflict."""
    if not works:
        return
    version = pipeline.model_version
    aggregate = pipeline.settings.aggregate
    try:
        with session.begin_nested():
            written = ledger.write_scores(
                session, token, [_score_entry(w) for w in works], version, aggregate
            )
    except IntegrityError:  # a duplicate was scored meanwhile: sort it out scan by scan
        written = False
    if written:
        for work in works:
            result.statuses[work.scan.id] = SCORED
        return
    frame_rows: list[dict[str, Any]] = []
    for work in works:
        _write_one(session, work, token, version, aggregate, frame_rows, result)
    ledger.insert_frame_scores(session, frame_rows)


def _write_one(
    session: Session,
    work: _Work,
    token: str,
    version: str,
    aggregate: str,
    frame_rows: list[dict[str, Any]],
    result: BatchResult,
) -> None:
    """Score one scan in its own savepoint; a duplicate becomes ``skipped``."""
    scan = work.scan
    entry = _score_entry(work)
    try:
        with session.begin_nested():
            written = ledger.write_score(
                session,
                scan,
                token,
                model_version=version,
                aggregate=aggregate,
                summary=entry.summary,
                frame_scores=entry.frame_scores,
                decode_ms=entry.decode_ms,
                inference_ms=entry.inference_ms,
                frame_rows=frame_rows,
            )
    except IntegrityError:  # scored meanwhile by another worker
        hit = ledger.find_scored_duplicate(
            session,
            model_version=version,
            sha256=scan.sha256,
            sop_instance_uid=scan.sop_instance_uid,
            exclude_scan_id=scan.id,
        )
        if hit is None:
            raise
        work.outcome = _duplicate(scan, hit[0], hit[1])
        if ledger.finish(session, scan.id, token, work.outcome, model_version=version):
            result.statuses[scan.id] = work.outcome.status
        else:
            result.not_claimed.append(scan.id)
        return
    if written:
        result.statuses[scan.id] = SCORED
    else:
        result.not_claimed.append(scan.id)


def _log_outcome(
    scan: Scan, status: str, *, reason: str | None = None, work: _Work | None = None
) -> None:
    extra: dict[str, Any] = {
        "scan_id": scan.id,
        "file": _printable(Path(scan.path).name),
        "sha256": scan.sha256[:12],
        "status": status,
    }
    if status == SCORED and work is not None and work.summary is not None:
        extra.update(
            score=round(float(work.summary.score), 2),
            grade=work.summary.grade,
            frames=work.summary.frames_scored,
            model_version=scan.model_version,
            decode_ms=round(work.decode_ms, 1),
            inference_ms=round(work.inference_ms, 1),
            first_defect=work.summary.first_defect,
            defects=[d.name for d in work.summary.defects],
        )
        log.info(
            "scan %d scored %.1f (%s, %d frame%s%s): %s",
            scan.id,
            extra["score"],
            extra["grade"],
            extra["frames"],
            "" if extra["frames"] == 1 else "s",
            f", {extra['first_defect']}" if extra["first_defect"] else "",
            extra["file"],
            extra=extra,
        )
        return
    extra["reason"] = None if reason is None else _printable(reason)
    level = logging.WARNING if status == FAILED else logging.INFO
    log.log(level, "scan %d %s: %s", scan.id, status, extra["reason"], extra=extra)


def process_scans(
    scan_ids: Sequence[int],
    pipeline: Pipeline,
    *,
    token: str | None = None,
    reraise: tuple[type[BaseException], ...] = (),
) -> BatchResult:
    """Score a batch of scans by id and write one outcome per scan.

    ``token`` identifies this piece of work: a retry of the same batch passes the same
    token and takes back its own claims. ``reraise`` lists extra exception types that must
    abort the batch instead of failing a scan (Celery's soft time limit).

    Raises :class:`~worker.errors.TransientError` (database unavailable) or
    :class:`~worker.errors.ModelError`: retry the batch later with the same token.
    """
    token = token or uuid.uuid4().hex
    result = BatchResult(token=token)
    ids = [int(i) for i in scan_ids]
    if not ids:
        return result
    pipeline.load()  # before claiming: a model that cannot load must not burn attempts
    metrics.model_loaded(pipeline.model_version)
    claimed = _claim(pipeline, ids, token)
    claimed_ids = {s.id for s in claimed}
    result.not_claimed = [i for i in ids if i not in claimed_ids]
    if not claimed:
        return result
    works = [_Work(scan) for scan in claimed]
    # scans with an earlier outcome were re-queued by `usqa rescore`: their latency counts
    # from then, not from when the file arrived weeks ago
    since = {s.id: s.queued_at if s.model_version else s.received_at for s in claimed}
    inference = _Inference(pipeline, reraise)
    written: set[int] = set()

    def write(done: list[_Work]) -> None:
        if not done:
            return
        _write(pipeline, done, token, result)
        _report(pipeline, done, result, since)
        written.update(id(w) for w in done)

    _read_and_score(works, pipeline, inference, reraise, write)
    write([w for w in works if id(w) not in written])
    pipeline.scans_done += sum(1 for s in result.statuses.values() if s != RETRY)
    return result


def _report(
    pipeline: Pipeline, works: list[_Work], result: BatchResult, since: dict[int, Any]
) -> None:
    """The outcome log line and metrics of each written work."""
    for work in works:
        status = result.statuses.get(work.scan.id)
        if status in (SCORED, SKIPPED, FAILED):
            work.scan.model_version = pipeline.model_version
            _log_outcome(
                work.scan,
                status,
                reason=None if work.outcome is None else work.outcome.reason,
                work=work,
            )
            duplicate = work.outcome is not None and work.outcome.duplicate_of is not None
            metrics.scan_finished(
                status,
                grade=None if work.summary is None else work.summary.grade,
                reason="duplicate" if duplicate else work.reason_class,
                received_at=since[work.scan.id],
            )

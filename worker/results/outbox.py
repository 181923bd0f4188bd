"""The delivery loop of the results outbox: claim due reports, build each from the scan's
own header, deliver it, record the outcome.

Reports are queued in the transaction that scores a DICOM scan
(:func:`worker.scoring.write.write_outcomes`), so a score never lacks its report and none
is queued twice. A delivering process (``usqa run`` or ``usqa ingest``; any number may run,
each row is claimed by one at a time with a guarded UPDATE and a lease) then, per pass:

1. claims up to ``limit`` due rows of the destinations it is configured with;
2. reads each scan's header (no pixels) from where its file is now, builds the SR as the
   class the destination accepts (:mod:`worker.results.sender`) and delivers it, followed
   for a poor scan by its Key Object Selection (:mod:`worker.results.kos`);
3. marks it ``sent``; or, for a transient failure (PACS down, busy, association
   refused), ``pending`` again with the next attempt pushed back (exponential backoff,
   10 s doubling to at most 15 min: a PACS down for a day loses nothing); or ``failed``
   when it can never be delivered (file deleted or changed, header without UIDs, the
   PACS refused the object with a failure status).

No database transaction stays open during network I/O. Since the SR's UIDs are derived
from the scan and the model version, a report delivered again after a lost answer
(a lease that expired mid-send) is the same object, which the PACS stores once.
"""

from __future__ import annotations

import logging
import threading
import uuid
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import db
from db import ledger
from db.ledger import OutboxSummary
from worker.errors import InputError, TransientError
from worker.results import sender
from worker.results.destinations import DIR_PREFIX, destinations, parse_peer
from worker.results.kos import build_selection
from worker.results.sr import COMPREHENSIVE_SR, ReportInput, build_report
from worker.scoring.retry import Backoff
from worker.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from pydicom import Dataset

__all__ = ["BACKOFF", "Deliverer", "PassResult"]

log = logging.getLogger(__name__)

BACKOFF = Backoff(10.0, 900.0)
LEASE_SECONDS = 300.0


@dataclass
class PassResult:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Job:
    outbox_id: int
    destination: str
    attempts: int
    header: Dataset  # read without pixels
    facts: ReportInput


class Deliverer:
    """Delivers the outbox of one process; :meth:`deliver_once` is one pass, :meth:`start`
    runs passes every ``every`` seconds in a daemon thread until :meth:`stop`."""

    def __init__(self, settings: Settings, every: float = 5.0, limit: int = 20) -> None:
        self.settings = settings
        self.destinations = destinations(settings)
        self.every = every
        self.limit = limit
        self.calling_ae = settings.dicom_ae_title
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def deliver_once(self) -> PassResult:
        result = PassResult()
        if not self.destinations:
            return result
        token = uuid.uuid4().hex
        with db.session_scope(self.settings.database_url) as session:
            rows = ledger.claim_due(
                session, self.destinations, token, lease_seconds=LEASE_SECONDS, limit=self.limit
            )
            claimed = [(r.id, r.destination, r.attempts) for r in rows]
        by_destination: dict[str, list[_Job]] = defaultdict(list)
        for outbox_id, destination, attempts in claimed:
            try:
                by_destination[destination].append(self._job(outbox_id, destination, attempts))
            except InputError as exc:
                self._record(outbox_id, token, exc, result)
        for destination, jobs in by_destination.items():
            self._deliver(destination, jobs, token, result)
        _publish(self.settings.database_url, result)
        return result

    def _job(self, outbox_id: int, destination: str, attempts: int) -> _Job:
        """What one row's report needs, read in a short transaction."""
        from pydicom import dcmread

        with db.session_scope(self.settings.database_url, readonly=True) as session:
            facts = ledger.report_facts(session, outbox_id)
            if facts is None:
                raise InputError(f"outbox row {outbox_id}: the scan or its score is gone")
            problem = ledger.file_problem(facts.scan)
            location = ledger.file_location(facts.scan)
            report = ReportInput(
                score=facts.score.score,
                grade=facts.score.grade,
                defects=facts.defects,
                model_version=facts.score.model_version,
                sha256=facts.scan.sha256,
            )
        if problem is not None or location is None:
            raise InputError(f"scan {facts.scan.id}: {problem or 'no file'}: no report built")
        try:
            header = dcmread(location, stop_before_pixels=True)
        except Exception as exc:  # the file was scored: unreadable now is final
            raise InputError(f"scan {facts.scan.id}: header unreadable: {exc}") from exc
        return _Job(outbox_id, destination, attempts, header, report)

    def _deliver(self, destination: str, jobs: list[_Job], token: str, result: PassResult) -> None:
        if destination.startswith(DIR_PREFIX):
            folder = Path(destination[len(DIR_PREFIX) :])
            for job in jobs:
                self._one(job, token, result, lambda r: sender.write_report_file(folder, r), True)
            return
        try:
            with sender.open_association(parse_peer(destination), self.calling_ae) as assoc:
                sop_class = assoc.sop_class or COMPREHENSIVE_SR
                for job in jobs:
                    self._one(job, token, result, assoc.store, assoc.takes_kos, sop_class)
        except TransientError as exc:  # no association: every job waits for the next try
            for job in jobs:
                self._record(job.outbox_id, token, exc, result, job.attempts)

    def _one(
        self,
        job: _Job,
        token: str,
        result: PassResult,
        deliver: Callable[[Dataset], object],
        with_kos: bool,
        sop_class: str = COMPREHENSIVE_SR,
    ) -> None:
        """Build and deliver one row's SR (and, for a poor scan, its KOS when the
        destination takes one), then record the outcome."""
        try:
            with warnings.catch_warnings():  # highdicom warns with header values (PHI)
                warnings.simplefilter("ignore")
                report = build_report(job.header, job.facts, sop_class)
                selection = build_selection(job.header, job.facts) if with_kos else None
            deliver(report)
            if selection is not None:
                deliver(selection)
        except (InputError, TransientError) as exc:
            self._record(job.outbox_id, token, exc, result, job.attempts)
            return
        with db.session_scope(self.settings.database_url) as session:
            ledger.mark_sent(
                session,
                job.outbox_id,
                token,
                sop_class_uid=str(report.SOPClassUID),
                sop_instance_uid=str(report.SOPInstanceUID),
            )
        result.sent += 1
        log.info("report of outbox row %d delivered to %s", job.outbox_id, job.destination)

    def _record(
        self, outbox_id: int, token: str, exc: Exception, result: PassResult, attempts: int = 0
    ) -> None:
        """A failed delivery: retried later (transient) or failed for good."""
        message = str(exc)
        result.errors.append(message)
        with db.session_scope(self.settings.database_url) as session:
            if isinstance(exc, TransientError):
                delay = BACKOFF.delay(attempts)
                later = ledger.db_now(session) + timedelta(seconds=delay)
                ledger.mark_retry(session, outbox_id, token, error=message, next_attempt_at=later)
                result.retried += 1
                log.warning(
                    "report %d not delivered, next try in %.0f s: %s", outbox_id, delay, message
                )
            else:
                ledger.mark_failed(session, outbox_id, token, error=message)
                result.failed += 1
                log.error("report %d cannot be delivered: %s", outbox_id, message)

    def start(self) -> None:
        if not self.destinations or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="usqa-results", daemon=True)
        self._thread.start()
        log.info("delivering structured reports to %s", ", ".join(self.destinations))

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                done = self.deliver_once()
            except Exception as exc:  # the database may be away for a while
                log.warning("results outbox not delivered this pass: %s", exc)
                done = PassResult()
            busy = done.sent + done.retried + done.failed >= self.limit
            if self._stop.wait(0.0 if busy else self.every):
                return

    def stop(self, timeout: float = 30.0, *, final_pass: bool = False) -> None:
        """End the thread; with ``final_pass``, deliver what is due once more first (``usqa
        run --once``: the reports of the scans it just scored)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None
        if final_pass and self.destinations:
            try:
                self.deliver_once()
            except Exception as exc:  # what is left stays pending for the next start
                log.warning("results outbox not delivered before exit: %s", exc)


def summary(database_url: str) -> OutboxSummary:
    with db.session_scope(database_url, readonly=True) as session:
        return ledger.outbox_summary(session)


def _publish(database_url: str, result: PassResult) -> None:
    from worker.ops import results_metrics

    results_metrics.delivered(result.sent, result.failed)
    results_metrics.publish(summary(database_url))

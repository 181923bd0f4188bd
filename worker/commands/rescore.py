"""``usqa rescore``: score the scans of a period again with the configured model.

After a model swap, the scans received (or acquired) in the period that have no score yet
for the new model version, and whose file is still there, go back to ``queued``; their
earlier scores stay in the database beside the new ones. Scans whose file is gone or
changed are listed and left as they are.

Embedded mode (no USQA_BROKER_URL): the scans are only recorded as queued; the running
``usqa run`` takes them within a few heartbeats (or at its next start). Scaled mode: their
ids are also sent to the broker, as the ingester does.

Exit codes: 0 done (or nothing to do), 1 some scans could not be re-scored (file gone or
changed), 2 configuration problem (bad option, model cannot load).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import db
from db import ledger, rescore
from db.models import SCORED, TERMINAL
from worker.commands.options import add_database_option
from worker.commands.scans import parse_since
from worker.errors import BrokerUnavailableError, ConfigError, ModelError
from worker.settings import Settings

__all__ = ["RescorePlan", "add_parser", "model_version_of", "parse_bound", "run"]

log = logging.getLogger(__name__)

_DATE_ONLY = re.compile(r"^\s*\d{4}-\d{2}-\d{2}\s*$")


def parse_bound(text: str, option: str, *, by: str, end: bool) -> datetime:
    """A range bound: an ISO date or date/time, or an age (``7d``). A plain date as
    ``--until`` includes that whole day. ``received`` bounds are local time (unless an
    offset is given) made aware UTC; ``acquired`` bounds are the scanner's own wall-clock
    time, naive, as stored."""
    if _DATE_ONLY.match(text):
        day = date.fromisoformat(text.strip())
        value = datetime(day.year, day.month, day.day)
        if end:
            value += timedelta(days=1)
        return value.astimezone(UTC) if by == "received" else value
    try:
        parsed = parse_since(text)
    except ConfigError as exc:
        raise ConfigError(
            f"{option} {text!r}: expected a date like 2025-03-01, a time like "
            "2025-03-01T08:00, or an age like 2h, 7d"
        ) from exc
    if by == "received":
        return parsed
    if re.search(r"[+-]\d{2}:?\d{2}$|Z$", text.strip()):  # an offset: not comparable
        raise ConfigError(
            f"{option} {text!r}: acquisition times are the scanner's own clock without a "
            "time zone; give the time without an offset"
        )
    return parsed.astimezone().replace(tzinfo=None)  # back to this machine's wall clock


def _statuses(text: str) -> list[str]:
    wanted = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in wanted if s not in TERMINAL]
    if bad or not wanted:
        raise ConfigError(
            f"--status {text!r}: expected a comma-separated list of {', '.join(TERMINAL)}"
        )
    return list(dict.fromkeys(wanted))


def model_version_of(settings: Settings) -> str:
    """The model version of the configured weights, computed as the workers do (the model
    is loaded, so a damaged file is refused here, before anything is queued)."""
    from model import Scorer

    return Scorer.load(settings.weights, device="cpu", precision="fp32").version


@dataclass
class RescorePlan:
    """What ``usqa rescore`` found and did."""

    model_version: str
    by: str
    since: datetime | None
    until: datetime | None
    statuses: list[str]
    dry_run: bool
    mode: str
    selected: int = 0
    queued: list[int] = field(default_factory=list)
    not_rescored: list[dict[str, Any]] = field(default_factory=list)
    sent: int = 0
    send_error: str | None = None
    workers_on_this_version: int = 0
    workers_on_other_versions: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "range": {
                "by": self.by,
                "since": None if self.since is None else self.since.isoformat(),
                "until": None if self.until is None else self.until.isoformat(),
            },
            "statuses": self.statuses,
            "dry_run": self.dry_run,
            "mode": self.mode,
            "selected": self.selected,
            "queued": len(self.queued),
            "queued_ids": self.queued,
            "not_rescored": self.not_rescored,
            "sent_to_broker": self.sent,
            "send_error": self.send_error,
            "workers_on_this_version": self.workers_on_this_version,
            "workers_on_other_versions": self.workers_on_other_versions,
        }


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "rescore",
        help="score the scans of a period again with the current (new) model",
        description="After a model change: put the scans of a period that have no score yet "
        "from the configured model back in the queue. Earlier scores are kept beside the new "
        "ones. Scans whose file was deleted or changed are listed and left as they are. "
        "Start `usqa run` or the workers with the same weights to score them.",
    )
    p.add_argument(
        "--since",
        default=None,
        metavar="T",
        help="from this date/time (2025-03-01, 2025-03-01T08:00) or age (7d); default: the start",
    )
    p.add_argument(
        "--until",
        default=None,
        metavar="T",
        help="up to this date/time, not included (a plain date includes that whole day); "
        "default: now",
    )
    p.add_argument(
        "--by",
        choices=list(rescore.RANGE_COLUMNS),
        default="received",
        help="compare the range with when usqa received the file (default), or with the "
        "acquisition time the scanner wrote in it (its own clock; files without one are left out)",
    )
    p.add_argument(
        "--status",
        default=SCORED,
        metavar="S[,S...]",
        help="which outcomes to redo: scored (default), skipped, failed, comma-separated",
    )
    p.add_argument(
        "--weights",
        dest="weights",
        type=Path,
        default=None,
        metavar="FILE",
        help="the new model checkpoint (USQA_WEIGHTS; default: the shipped model). The "
        "workers must run the same file",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="only show what would be queued; change nothing"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_database_option(p)
    return p


def _workers(plan: RescorePlan, settings: Settings) -> None:
    """Count the live scoring processes by the model version they run."""
    with db.session_scope(settings.database_url, readonly=True) as session:
        alive_since = ledger.age_cutoff(settings.dead_after_seconds, ledger.db_now(session))
        versions = ledger.live_model_versions(session, alive_since=alive_since)
    for version in versions:
        if version == plan.model_version:
            plan.workers_on_this_version += 1
        elif version is not None:
            plan.workers_on_other_versions[version] = (
                plan.workers_on_other_versions.get(version, 0) + 1
            )


def _send(plan: RescorePlan, settings: Settings) -> None:
    from worker.transport.celery_app import send_batch

    size = max(1, settings.files_per_task)
    try:
        for start in range(0, len(plan.queued), size):
            chunk = plan.queued[start : start + size]
            send_batch(settings, chunk)
            plan.sent += len(chunk)
    except BrokerUnavailableError as exc:
        plan.send_error = str(exc)


def _report(plan: RescorePlan) -> str:
    span = (
        f"{plan.by} "
        f"{'the start' if plan.since is None else plan.since.isoformat()} to "
        f"{'now' if plan.until is None else plan.until.isoformat()}"
    )
    verb = "would queue" if plan.dry_run else "queued"
    lines = [
        f"model {plan.model_version}: {plan.selected} {'/'.join(plan.statuses)} scan(s) "
        f"{span} have no score from it; {verb} {len(plan.queued)}"
    ]
    for item in plan.not_rescored:
        lines.append(f"  not re-scored: scan {item['id']}: {item['reason']}")
    if not plan.dry_run and plan.queued:
        if plan.mode == "embedded":
            lines.append("they will be scored by the running `usqa run` (or when it next starts)")
        elif plan.send_error is None:
            lines.append(f"sent {plan.sent} to the workers")
        else:
            lines.append(
                f"could not send them to the broker ({plan.send_error}); they stay queued and "
                "the running `usqa ingest` sends them again once the broker is back"
            )
    if plan.workers_on_other_versions:
        others = ", ".join(f"{v} ({n})" for v, n in sorted(plan.workers_on_other_versions.items()))
        lines.append(
            f"warning: running workers use other models: {others}; restart them with the new "
            "weights, or they will not produce scores from this model"
        )
    elif not plan.workers_on_this_version and plan.queued:
        lines.append(
            f"note: no running worker uses model {plan.model_version} yet; start `usqa run` or "
            "`usqa worker` with these weights"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace, settings: Settings) -> int:
    statuses = _statuses(args.status)
    since = parse_bound(args.since, "--since", by=args.by, end=False) if args.since else None
    until = parse_bound(args.until, "--until", by=args.by, end=True) if args.until else None
    if since is not None and until is not None and since >= until:
        raise ConfigError(f"--since {args.since!r} is not before --until {args.until!r}")
    db.require_current(settings.database_url)
    try:
        version = model_version_of(settings)
    except ModelError as exc:
        log.error("the model cannot be loaded: %s", exc)
        return 2
    plan = RescorePlan(
        model_version=version,
        by=args.by,
        since=since,
        until=until,
        statuses=statuses,
        dry_run=args.dry_run,
        mode="scaled" if settings.broker_url else "embedded",
    )
    with db.session_scope(settings.database_url, readonly=True) as session:
        candidates = rescore.rescore_candidates(
            session, model_version=version, statuses=statuses, since=since, until=until, by=args.by
        )
        session.expunge_all()
    plan.selected = len(candidates)
    ready = []
    for scan in candidates:
        problem = ledger.file_problem(scan)
        if problem is None:
            ready.append(scan)
        else:
            plan.not_rescored.append({"id": scan.id, "path": scan.path, "reason": problem})
    if args.dry_run:
        plan.queued = [s.id for s in ready]
    elif ready:
        with db.session_scope(settings.database_url) as session:
            plan.queued = ledger.rescore_requeue(session, ready, version)
        log.info("re-queued %d scan(s) for model %s", len(plan.queued), version)
        if plan.mode == "scaled":
            _send(plan, settings)
    _workers(plan, settings)
    out = sys.stdout
    if args.json:
        out.write(json.dumps(plan.as_dict()) + "\n")
    else:
        out.write(_report(plan) + "\n")
    return 1 if plan.not_rescored else 0

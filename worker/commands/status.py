"""``usqa status [--json]``: is scoring keeping up? Counts per status, queue depth, the
oldest scan waiting, the last scoring time, the workers seen and the results outbox (the
structured reports pending, sent and failed, the oldest pending one).

Exit codes (for monitoring): 0 healthy; 1 a scan has waited longer than
USQA_ALERT_WAIT_SECONDS, or the broker cannot be reached; 2 configuration problem.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

import db
from db import ledger, queries
from db.queries import LedgerStatus
from db.session import shown_url
from worker.commands.options import add_database_option
from worker.errors import BrokerUnavailableError
from worker.settings import Settings

__all__ = ["add_parser", "run"]

WORKERS_WINDOW_S = 3600.0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "status",
        help="show whether scoring keeps up; exits 1 when scans wait too long",
        description="Show scans per status, the queue, the oldest scan still waiting, when "
        "the last scan was scored and which workers are alive. Exits 1 when a scan has waited "
        "longer than USQA_ALERT_WAIT_SECONDS or the broker is unreachable, so monitoring can "
        "call it.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--max-wait",
        dest="alert_wait_seconds",
        type=float,
        default=None,
        metavar="S",
        help="alert when a scan has waited longer than S seconds (USQA_ALERT_WAIT_SECONDS)",
    )
    add_database_option(p)
    p.add_argument(
        "--broker-url", dest="broker_url", default=None, metavar="URL", help="USQA_BROKER_URL"
    )
    return p


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    seconds = max(0.0, (now - when).total_seconds())
    if seconds < 120:
        age = f"{seconds:.0f} s"
    elif seconds < 7200:
        age = f"{seconds / 60:.0f} min"
    else:
        age = f"{seconds / 3600:.1f} h"
    return f"{when.isoformat(timespec='seconds')} ({age} ago)"


def run(args: argparse.Namespace, settings: Settings) -> int:
    db.require_current(settings.database_url)
    with db.session_scope(settings.database_url, readonly=True) as session:
        now = ledger.db_now(session)  # heartbeats are stamped with the database's clock
        state = queries.status_summary(
            session, workers_since=ledger.age_cutoff(WORKERS_WINDOW_S, now)
        )
        outbox = ledger.outbox_summary(session)
    problems: list[str] = []
    queue = _queue(settings, state, problems)
    waited = state.waiting_seconds(now)
    if waited > settings.alert_wait_seconds:
        problems.append(
            f"scan {state.oldest_waiting_id} has waited {waited:.0f} s, longer than "
            f"{settings.alert_wait_seconds:.0f} s (USQA_ALERT_WAIT_SECONDS): are the workers "
            "running and keeping up?"
        )
    workers = _workers(state, now, settings.dead_after_seconds)
    report = _report(settings, state, queue, workers, waited, problems)
    report["results"] = _results(outbox, now)
    out = sys.stdout
    if args.json:
        out.write(json.dumps(report) + "\n")
        return 0 if not problems else 1
    lines = _text(settings, state, report, waited, now)
    out.write("\n".join(lines) + "\n")
    return 0 if not problems else 1


def _queue(settings: Settings, state: LedgerStatus, problems: list[str]) -> dict[str, Any]:
    """The queue's depth: the broker's (an unreachable broker is added to ``problems``) or,
    in embedded mode, the scans ``queued`` in the ledger."""
    if not settings.broker_url:
        return {"mode": "embedded", "waiting": state.counts["queued"], "unacked": None}
    from worker.transport.celery_app import queue_depth

    try:
        depth = queue_depth(settings)
    except BrokerUnavailableError as exc:
        problems.append(str(exc))
        return {"mode": "broker", "waiting": None, "unacked": None, "error": str(exc)}
    if depth is None:
        return {"mode": "broker", "waiting": None, "unacked": None}
    return {"mode": "broker", "waiting": depth.waiting, "unacked": depth.unacked}


def _workers(state: LedgerStatus, now: datetime, dead_after: float) -> list[dict[str, Any]]:
    return [
        {
            "name": w.name,
            "mode": w.mode,
            "alive": w.stopped_at is None and (now - w.last_seen_at).total_seconds() <= dead_after,
            "last_seen_at": w.last_seen_at.isoformat(),
            "stopped_at": w.stopped_at.isoformat() if w.stopped_at else None,
            "scans_done": w.scans_done,
            "model_version": w.model_version,
        }
        for w in state.workers
    ]


def _report(
    settings: Settings,
    state: LedgerStatus,
    queue: dict[str, Any],
    workers: list[dict[str, Any]],
    waited: float,
    problems: list[str],
) -> dict[str, Any]:
    """The ``--json`` object (the text form is written from it)."""
    return {
        "database": shown_url(settings.database_url),
        "counts": state.counts,
        "queue": queue,
        "oldest_waiting": None
        if state.oldest_waiting_id is None
        else {
            "id": state.oldest_waiting_id,
            "since": state.oldest_waiting_since.isoformat() if state.oldest_waiting_since else None,
            "waited_seconds": round(waited, 1),
        },
        "last_scored_at": state.last_scored_at.isoformat() if state.last_scored_at else None,
        "workers": workers,
        "alert_wait_seconds": settings.alert_wait_seconds,
        "ok": not problems,
        "problems": problems,
    }


def _text(
    settings: Settings, state: LedgerStatus, report: dict[str, Any], waited: float, now: datetime
) -> list[str]:
    """The lines ``usqa status`` prints without ``--json``."""
    queue, workers = report["queue"], report["workers"]
    counts = ", ".join(f"{k} {v}" for k, v in state.counts.items())
    lines = [f"database: {report['database']}", f"scans: {counts}"]
    if queue["mode"] == "embedded":
        lines.append(f"queue: embedded mode (no broker), {queue['waiting']} queued")
    elif queue.get("error"):
        lines.append("queue: broker unreachable")
    else:
        lines.append(
            f"queue: {queue['waiting']} waiting on the broker, {queue['unacked']} taken by workers"
        )
    if state.oldest_waiting_id is None:
        lines.append("oldest waiting: none")
    else:
        lines.append(
            f"oldest waiting: scan {state.oldest_waiting_id}, waiting {waited:.0f} s "
            f"(alert after {settings.alert_wait_seconds:.0f} s)"
        )
    lines.append(f"last scored: {_ago(state.last_scored_at, now)}")
    lines.extend(_results_text(report["results"], now))
    alive = sum(1 for w in workers if w["alive"])
    lines.append(f"workers: {alive} alive (seen in the last hour: {len(workers)})")
    for w in workers:
        mark = "alive" if w["alive"] else ("stopped" if w["stopped_at"] else "silent")
        lines.append(
            f"  {w['name']:<32} {w['mode']:<9} {mark:<8} last seen "
            f"{_ago(datetime.fromisoformat(str(w['last_seen_at'])), now)}, {w['scans_done']} scans"
        )
    for problem in report["problems"]:
        lines.append(f"PROBLEM: {problem}")
    return lines


def _results(outbox: ledger.OutboxSummary, now: datetime) -> dict[str, Any]:
    """The results outbox for ``--json``: rows per state and the oldest pending one."""
    since = outbox.oldest_pending_since
    return {
        "counts": outbox.counts,
        "oldest_pending": None
        if outbox.oldest_pending_id is None or since is None
        else {
            "id": outbox.oldest_pending_id,
            "since": since.isoformat(),
            "waited_seconds": round(max(0.0, (now - since).total_seconds()), 1),
            "last_error": outbox.last_error,
        },
    }


def _results_text(results: dict[str, Any], now: datetime) -> list[str]:
    counts = results["counts"]
    lines = [
        f"results outbox: pending {counts['pending']}, sent {counts['sent']}, "
        f"failed {counts['failed']}"
    ]
    oldest = results["oldest_pending"]
    if oldest is not None:
        lines.append(
            f"  oldest pending: report {oldest['id']}, queued "
            f"{_ago(datetime.fromisoformat(oldest['since']), now)}"
        )
        if oldest["last_error"]:
            lines.append(f"  last error: {oldest['last_error']}")
    return lines

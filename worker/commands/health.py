"""``usqa health``: is the worker or ingester on this machine (or in this container) alive,
not stuck, and able to reach the broker? For container health checks, Kubernetes probes and
monitoring agents.

Exit codes: 0 healthy, 1 unhealthy (one line per problem on stdout), 2 configuration error.
"""

from __future__ import annotations

import argparse
import json
import sys

from worker.ops.health import run_checks
from worker.settings import Settings

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "health",
        help="check that the local worker or ingester is alive, not stuck, and reaches the broker",
        description="Read the heartbeat file that a running `usqa worker`, `usqa ingest` or "
        "`usqa run` writes (USQA_HEARTBEAT_FILE) and ping the broker (USQA_BROKER_URL). "
        "Unhealthy when the heartbeat is older than three beat intervals, when a task has "
        "run past its time limit, or when the broker does not answer. Exit 0 healthy, 1 not.",
    )
    p.add_argument(
        "--heartbeat-file",
        dest="heartbeat_file",
        default=None,
        help="heartbeat file of the process to check (USQA_HEARTBEAT_FILE)",
    )
    p.add_argument(
        "--no-broker",
        action="store_true",
        help="skip the broker ping (liveness probes: a broker outage is not fixed by a restart)",
    )
    p.add_argument("--json", action="store_true", help="print the checks as one JSON object")
    return p


def run(args: argparse.Namespace, settings: Settings) -> int:
    checks = run_checks(settings, broker=not args.no_broker)
    healthy = all(c.ok for c in checks)
    if args.json:
        payload = {
            "healthy": healthy,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks],
        }
        print(json.dumps(payload), file=sys.stdout)
    else:
        for c in checks:
            print(f"{'ok' if c.ok else 'UNHEALTHY'} {c.name}: {c.detail}", file=sys.stdout)
    return 0 if healthy else 1

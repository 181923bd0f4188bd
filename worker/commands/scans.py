"""``usqa scans [--status S] [--since T] [--defect NAME] [--json]``: list the ledger, one
scan per line, with its score, grade and first defect (``--json`` also carries every listed
defect)."""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from datetime import UTC, datetime, timedelta

import db
from db import queries
from db.models import STATUSES
from db.paths import printable
from model.defects import DEFECTS
from worker.commands.options import add_database_option
from worker.errors import ConfigError
from worker.settings import Settings

__all__ = ["add_parser", "check_defect", "parse_since", "run"]

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``30m``, ``2h``, ``7d``, ``1w`` ago, or an ISO date/time (local time unless it
    carries an offset), as an aware UTC datetime."""
    now = now or datetime.now(UTC)
    match = _RELATIVE.match(text)
    if match:
        return now - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2).lower()])
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ConfigError(
            f"--since {text!r}: expected a time like 2025-03-01, 2025-03-01T08:00, or an age "
            "like 30m, 2h, 7d"
        ) from exc
    if value.tzinfo is None:
        value = value.astimezone()  # the machine's local time zone
    return value.astimezone(UTC)


def check_defect(name: str) -> str:
    """``name`` if it is one of the defect names the model uses, else ConfigError naming
    them (and the closest one)."""
    if name in DEFECTS:
        return name
    close = difflib.get_close_matches(name.strip().lower().replace("-", "_"), DEFECTS, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise ConfigError(
        f"--defect {name!r}: not a defect name; {hint}expected one of {', '.join(DEFECTS)}"
    )


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "scans",
        help="list the scans in the database with their status, score, grade and defect",
        description="List the scans received, oldest first: status (queued, processing, "
        "scored, skipped, failed), score, grade, first defect ('clean' when the model found "
        "none, blank when it does not judge defects) and, for skipped or failed scans, the "
        "reason. --json lines also carry 'defects': every listed defect, most probable first.",
    )
    p.add_argument("--status", choices=STATUSES, default=None, help="only scans in this status")
    p.add_argument(
        "--since",
        default=None,
        metavar="T",
        help="only scans received since T: a date/time (2025-03-01T08:00) or an age (2h, 7d)",
    )
    p.add_argument(
        "--defect",
        default=None,
        metavar="NAME",
        help="only scored scans whose current result lists this defect, at any rank "
        f"(one of {', '.join(DEFECTS)})",
    )
    p.add_argument("--limit", type=int, default=0, metavar="N", help="only the last N scans")
    p.add_argument("--json", action="store_true", help="one JSON object per scan and line")
    add_database_option(p)
    return p


def _defect(row: dict[str, object]) -> str:
    """The defect cell: the first defect, ``clean`` when the model judged none, else blank
    (no score, or a model without a defect head)."""
    if row["first_defect"]:
        return str(row["first_defect"])
    return "clean" if row["defects"] == [] else ""


def _table(rows: list[dict[str, object]]) -> str:
    head = (
        f"{'id':>7}  {'status':<10} {'score':>6}  {'grade':<8} {'defect':<17} {'try':>3}  "
        f"{'received':<19}  file"
    )
    lines = [head]
    for r in rows:
        score = "" if r["score"] is None else f"{r['score']:.1f}"
        received = str(r["received_at"])[:19].replace("T", " ")
        line = (
            f"{r['id']:>7}  {r['status']:<10} {score:>6}  {r['grade'] or '':<8} "
            f"{_defect(r):<17} {r['attempts']:>3}  {received:<19}  {printable(str(r['path']))}"
        )
        if r["reason"]:  # on a line of its own, never more than one
            line += f"\n{'':>9}{printable(str(r['reason']))[:200]}"
        lines.append(line)
    return "\n".join(lines)


def run(args: argparse.Namespace, settings: Settings) -> int:
    since = parse_since(args.since) if args.since else None
    if args.limit < 0:
        raise ConfigError(f"--limit {args.limit}: expected 0 (all) or more")
    defect = check_defect(args.defect) if args.defect is not None else None
    db.require_current(settings.database_url)
    with db.session_scope(settings.database_url, readonly=True) as session:
        rows = queries.list_scans(
            session, status=args.status, since=since, limit=args.limit or None, defect=defect
        )
    out = sys.stdout
    if args.json:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    elif rows:
        out.write(_table(rows) + "\n")
    else:
        out.write("no scans match\n")
    return 0

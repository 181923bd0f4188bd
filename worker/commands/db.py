"""``usqa db upgrade|current``: create or upgrade the ledger schema (Alembic)."""

from __future__ import annotations

import argparse
import json
import sys

import db
from db.session import shown_url
from worker.commands.options import add_database_option
from worker.settings import Settings

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "db",
        help="create or upgrade the database tables",
        description="Create the usqa tables, or upgrade them after installing a new usqa "
        "version (back up the database first). Safe to run more than once.",
    )
    p.add_argument(
        "action",
        choices=["upgrade", "current"],
        help="upgrade: bring the schema to this version; current: show the schema version",
    )
    add_database_option(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def run(args: argparse.Namespace, settings: Settings) -> int:
    url = settings.database_url
    if args.action == "upgrade":
        before, after = db.upgrade(url)
        result = {"database": shown_url(url), "before": before, "after": after}
        text = (
            f"{shown_url(url)}: schema at {after} (unchanged)"
            if before == after
            else f"{shown_url(url)}: schema upgraded from {before or 'empty'} to {after}"
        )
    else:
        current, head = db.current_revision(url), db.head_revision()
        result = {"database": shown_url(url), "current": current, "head": head}
        text = f"{shown_url(url)}: schema {current or 'empty'} (this usqa needs {head})"
    print(json.dumps(result) if args.json else text, file=sys.stdout)
    return 0 if args.action == "upgrade" or result.get("current") == result.get("head") else 1

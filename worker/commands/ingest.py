"""``usqa ingest --watch DIR``: the scaled-mode ingester. Records each complete file in the
database, queues its id on the broker for `usqa worker` processes, moves or deletes files
after scoring (USQA_AFTER_SCORING) and re-queues scans that got lost (broker restarted,
worker died). Run one per drop folder.
"""

from __future__ import annotations

import argparse

from worker.commands.options import add_broker_option, add_ingest_options
from worker.service import run_ingester
from worker.settings import Settings

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "ingest",
        help="watch a drop folder and queue its scans for `usqa worker` (scaled mode)",
        description="Watch the drop folder, record every complete file in the database and "
        "queue it on the broker (USQA_BROKER_URL) for `usqa worker` processes. Also re-queues "
        "scans that got lost. Run exactly one per drop folder.",
    )
    add_ingest_options(p)
    add_broker_option(p)
    return p


def run(args: argparse.Namespace, settings: Settings) -> int:
    return run_ingester(args.watch, settings)

"""``usqa listen --watch DIR``: the DICOM listener (Storage SCP) as its own process, beside
``usqa ingest`` in the scaled mode. Scanners and PACS send with C-STORE; each data set is
written into the drop folder, recorded, and queued on the broker before Success is
answered (docs/operations.md, "Receiving over DICOM").
"""

from __future__ import annotations

import argparse
from pathlib import Path

from worker.commands.options import (
    add_broker_option,
    add_database_option,
    add_listen_options,
)
from worker.settings import Settings

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "listen",
        help="receive DICOM over the network (C-STORE) into a drop folder (scaled mode)",
        description="Receive images from scanners and PACS over DICOM (C-STORE, C-ECHO): each "
        "one is written into the drop folder and recorded in the database, and queued on the "
        "broker (USQA_BROKER_URL) for `usqa worker` processes, before the sender is answered "
        "Success. Run it beside `usqa ingest` on the same drop folder; one per drop folder.",
    )
    p.add_argument(
        "--watch",
        type=Path,
        required=True,
        metavar="DIR",
        help="the drop folder received files are written into (the one `usqa ingest` watches)",
    )
    add_database_option(p)
    add_listen_options(p)
    add_broker_option(p)
    return p


def run(args: argparse.Namespace, settings: Settings) -> int:
    from worker.listener.service import run_listener

    return run_listener(args.watch, settings)

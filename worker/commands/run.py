"""``usqa run --watch DIR``: the embedded default. One process watches the drop folder and
scores what arrives, writing to the SQLite file ``usqa.db`` (or USQA_DATABASE_URL); no
broker, no servers. The schema is created or upgraded on start.

Exit codes: 0 stopped cleanly (or, with ``--once``, every file scored or skipped), 1 with
``--once`` some file failed, 2 configuration problem (bad setting, model cannot load).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from worker.commands.options import add_ingest_options, add_listen_options
from worker.errors import ModelError
from worker.service import run_embedded
from worker.settings import Settings

__all__ = ["add_parser", "run"]

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "run",
        help="watch a drop folder and score every scan in this process (no servers needed)",
        description="Watch the drop folder and score each DICOM, PNG or JPEG file that "
        "arrives, in this process: results go to the database (default: the SQLite file "
        "usqa.db in the current folder). Stop with Ctrl-C or SIGTERM: the files in hand are "
        "finished first; files that arrive while usqa is stopped are taken at the next start.",
    )
    add_ingest_options(p)
    p.add_argument(
        "--once",
        action="store_true",
        help="score what is in the folder, then exit (exit code 1 if some file failed)",
    )
    p.add_argument(
        "--listen",
        action="store_true",
        help="also receive DICOM over the network (C-STORE) into the drop folder, on "
        "USQA_DICOM_PORT (default 11112) as USQA_DICOM_AE_TITLE (default USQA)",
    )
    add_listen_options(p)
    p.add_argument(
        "--weights",
        dest="weights",
        type=Path,
        default=None,
        metavar="FILE",
        help="model checkpoint (USQA_WEIGHTS; default: the shipped model)",
    )
    return p


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return run_embedded(args.watch, settings, once=args.once, listen=args.listen)
    except ModelError as exc:
        log.error("the model cannot be loaded: %s", exc)
        return 2

"""The command-line options several ``usqa`` commands share, defined once."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

__all__ = [
    "add_broker_option",
    "add_database_option",
    "add_file_options",
    "add_ingest_options",
    "add_listen_options",
    "iso_day",
]


def iso_day(text: str) -> date:
    """An argparse type: a calendar day written YYYY-MM-DD."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date; expected YYYY-MM-DD, e.g. 2025-03-01"
        ) from None


def add_database_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database-url",
        dest="database_url",
        default=None,
        metavar="URL",
        help="database of the ledger (USQA_DATABASE_URL; default sqlite:///usqa.db)",
    )


def add_broker_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--broker-url",
        dest="broker_url",
        default=None,
        metavar="URL",
        help="the broker (USQA_BROKER_URL), e.g. redis://queue-host:6379/0",
    )


def add_file_options(p: argparse.ArgumentParser) -> None:
    """The output and model options of ``usqa score`` and ``usqa explain``."""
    p.add_argument("--json", action="store_true", help="one JSON object per file and line")
    p.add_argument(
        "--weights",
        dest="weights",
        type=Path,
        default=None,
        help="model checkpoint (USQA_WEIGHTS; default: the shipped model)",
    )
    p.add_argument(
        "--frames",
        dest="frames_to_score",
        type=int,
        default=None,
        help="frames scored per cine loop, evenly spaced; 0 = all (USQA_FRAMES_TO_SCORE)",
    )


def add_ingest_options(p: argparse.ArgumentParser) -> None:
    """The drop-folder options of ``usqa run`` and ``usqa ingest``."""
    p.add_argument(
        "--watch",
        type=Path,
        required=True,
        metavar="DIR",
        help="the drop folder to watch (created if missing); files in sub-folders count too",
    )
    add_database_option(p)
    p.add_argument(
        "--polling",
        dest="polling",
        action="store_const",
        const=True,
        default=None,
        help="poll the folder instead of inotify: needed on NFS/SMB shares (USQA_POLLING)",
    )
    p.add_argument(
        "--after-scoring",
        dest="after_scoring",
        choices=["keep", "move", "delete"],
        default=None,
        help="what to do with a file once it has its result: keep it, move it to done/ or "
        "failed/ inside the drop folder, or delete it (USQA_AFTER_SCORING; default keep)",
    )
    p.add_argument(
        "--stable-seconds",
        dest="stable_seconds",
        type=float,
        default=None,
        metavar="S",
        help="take a file once it has not changed for this long (USQA_STABLE_SECONDS)",
    )


def add_listen_options(p: argparse.ArgumentParser) -> None:
    """The DICOM listener's options of ``usqa listen`` and ``usqa run --listen``."""
    p.add_argument(
        "--dicom-port",
        dest="dicom_port",
        type=int,
        default=None,
        metavar="PORT",
        help="TCP port of the DICOM listener (USQA_DICOM_PORT; default 11112)",
    )
    p.add_argument(
        "--ae-title",
        dest="dicom_ae_title",
        default=None,
        metavar="AET",
        help="the listener's AE title (USQA_DICOM_AE_TITLE; default USQA)",
    )

"""The ``usqa`` command line: one parser, one sub-command module per verb.

Each module in :mod:`worker.commands` provides ``add_parser(subparsers)`` and
``run(args, settings) -> int``. Any option whose ``dest`` is a :class:`Settings` field
overrides that setting (CLI flag > ``USQA_*`` variable > default).

Exit codes (DESIGN.md): 0 all inputs fine, 1 some inputs failed, 2 usage or configuration.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from dataclasses import fields
from typing import Protocol

from worker.errors import ConfigError, UsqaError
from worker.logs import configure_logging
from worker.settings import Settings, load_settings

__all__ = ["build_parser", "main"]

log = logging.getLogger(__name__)

# Sub-command modules, in the order `usqa --help` lists them.
COMMAND_MODULES = (
    "inspect",
    "score",
    "train",
    "evaluate",
    "run",
    "ingest",
    "listen",
    "worker",
    "scans",
    "status",
    "rescore",
    "health",
    "db",
    "report",
    "explain",
    "serve",
    "user",
    "calibrate",
    "export_reviews",
)


class _Command(Protocol):
    def add_parser(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser: ...

    def run(self, args: argparse.Namespace, settings: Settings) -> int: ...


def _available_commands() -> list[_Command]:
    found = []
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"worker.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"worker.commands.{name}":
                continue  # verb not part of this build
            raise
        found.append(module)
    return found  # type: ignore[return-value]


def build_parser() -> argparse.ArgumentParser:
    """The full ``usqa`` parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="usqa",
        description="Score the image quality of ultrasound scans (DICOM, PNG, JPEG) and keep "
        "the results in a SQL database for QA reporting.",
        epilog="Settings come from USQA_* environment variables; flags override them. "
        "See README.md for the full list.",
    )
    parser.add_argument(
        "--log-format",
        dest="log_format",
        choices=["text", "json"],
        default=None,
        help="log line format (USQA_LOG_FORMAT)",
    )
    parser.add_argument(
        "--log-level",
        dest="log_level",
        default=None,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level (USQA_LOG_LEVEL)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in _available_commands():
        sub = module.add_parser(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    names = {f.name for f in fields(Settings)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``usqa`` console script. Returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    try:
        settings = load_settings(_overrides(args))
    except ConfigError as exc:
        print(f"usqa: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    try:
        return int(args._run(args, settings))
    except ConfigError as exc:
        print(f"usqa: configuration error: {exc}", file=sys.stderr)
        return 2
    except UsqaError as exc:
        print(f"usqa: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("usqa: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

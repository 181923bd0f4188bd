"""Helpers for the deployment-file checks: where the files are, how to read them, and which
``usqa`` verbs and settings really exist (so a manifest cannot name a command or a variable that
the program does not have)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from worker.cli import COMMAND_MODULES, build_parser
from worker.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
SYSTEMD = DEPLOY / "systemd"


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    """Every non-empty document of a YAML file (safe loader)."""
    with path.open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def usqa_verbs() -> set[str]:
    """Verbs that are both registered in the CLI and implemented by a module."""
    return {
        name
        for name in COMMAND_MODULES
        if importlib.util.find_spec(f"worker.commands.{name}") is not None
    }


def setting_variables() -> set[str]:
    """The ``USQA_*`` environment variables the settings object reads."""
    return {f"USQA_{f.name.upper()}" for f in fields(Settings)}


def interpolate_defaults(text: str) -> str:
    """Replace compose-style ``${NAME:-default}`` with its default (what an unset NAME gives)."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}", r"\1", text)


def assert_usqa_command(argv: list[str], where: str) -> None:
    """``argv`` is ``[verb, ...]`` after the ``usqa`` entry point: the verb must exist and the
    real ``usqa`` parser must accept the whole command line."""
    assert argv, f"{where}: empty command"
    verb = argv[0]
    assert verb in usqa_verbs(), (
        f"{where}: `usqa {verb}` is not a usqa verb (have: {sorted(usqa_verbs())})"
    )
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            build_parser().parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(
            f"{where}: usqa rejects `usqa {' '.join(argv)}`: {err.getvalue().strip()}"
        ) from exc

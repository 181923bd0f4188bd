"""docs/operations.md and docs/reviews.md: every `usqa ...` command they tell IT staff to type
is accepted by the real parser, and every file of deploy/ they name exists."""

from __future__ import annotations

import re
import shlex

from tests.deploy.deploy_files import REPO, assert_usqa_command, usqa_verbs
from worker.cli import COMMAND_MODULES

OPERATIONS = REPO / "docs" / "operations.md"
REVIEWS = REPO / "docs" / "reviews.md"


def _commands() -> list[str]:
    """Every ``usqa VERB ...`` in code spans and code blocks (prose never follows a verb)."""
    verbs = "|".join(COMMAND_MODULES)
    pattern = re.compile(rf"(?:^|[\s/])usqa ((?:{verbs})\b[^`'|;&)\n]*)")
    text = OPERATIONS.read_text(encoding="utf-8") + REVIEWS.read_text(encoding="utf-8")
    spans = re.findall(r"`([^`\n]+)`", text)
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [m.group(1).strip() for chunk in spans + blocks for m in pattern.finditer(chunk)]


def test_documented_usqa_commands_parse() -> None:
    commands = _commands()
    assert len(commands) >= 10
    placeholders = {"DIR": "/data/dropbox", "N": "1", "<time>": "2h", "NAME": "lena"}
    for command in commands:
        argv = [placeholders.get(a, a) for a in shlex.split(command)]
        synopsis = any(a.startswith("[") or a.endswith("]") for a in argv)
        if len(argv) == 1 or synopsis:  # a verb named in prose or its synopsis: it must exist
            assert argv[0] in usqa_verbs(), f"docs/operations.md names `usqa {argv[0]}`"
        else:  # a command line to type: the parser must accept it
            assert_usqa_command(argv, f"docs/operations.md: `usqa {command}`")


def test_documented_deploy_files_exist() -> None:
    text = OPERATIONS.read_text(encoding="utf-8") + REVIEWS.read_text(encoding="utf-8")
    for path in set(re.findall(r"\b(deploy/[A-Za-z0-9_./-]+[A-Za-z0-9_])", text)):
        if path.startswith("deploy/usqa-") and "." not in path:
            continue  # `kubectl scale deploy/usqa-worker`: a Deployment, not a file
        assert (REPO / path).exists(), f"docs/operations.md names {path}, which does not exist"

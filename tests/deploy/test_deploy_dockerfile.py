"""The image recipe: parsed with Docker's own parser (the `dockerfile` package wraps BuildKit's
Go parser), then checked for what docs/operations.md promises about the image."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import dockerfile  # type: ignore[import-not-found]
import pytest

from tests.deploy.deploy_files import DEPLOY, REPO, assert_usqa_command, setting_variables

DOCKERFILE = DEPLOY / "Dockerfile"


@pytest.fixture(scope="module")
def commands() -> tuple[dockerfile.Command, ...]:
    return dockerfile.parse_file(str(DOCKERFILE))


def _stages(commands: tuple[dockerfile.Command, ...]) -> list[tuple[str, str, list]]:
    """(base, name, instructions) per FROM, in order."""
    stages: list[tuple[str, str, list]] = []
    for cmd in commands:
        if cmd.cmd == "FROM":
            value = list(cmd.value)
            name = value[2] if len(value) == 3 and value[1].upper() == "AS" else ""
            stages.append((value[0], name, []))
        elif stages:
            stages[-1][2].append(cmd)
    return stages


def _global_args(commands: tuple[dockerfile.Command, ...]) -> dict[str, str]:
    args = {}
    for cmd in commands:
        if cmd.cmd == "FROM":
            break
        if cmd.cmd == "ARG":
            name, _, default = cmd.value[0].partition("=")
            args[name] = default
    return args


def _stage_args(instructions: list) -> dict[str, str]:
    out = {}
    for cmd in instructions:
        if cmd.cmd == "ARG":
            name, _, default = cmd.value[0].partition("=")
            out[name] = default
    return out


def test_base_image_and_flavours(commands: tuple[dockerfile.Command, ...]) -> None:
    args = _global_args(commands)
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    assert args["FLAVOR"] == "cpu"
    stages = {name: (base, ins) for base, name, ins in _stages(commands)}
    # One PyTorch stage per flavour; the build stage picks one by the FLAVOR argument.
    assert stages["build"][0] == "torch-${FLAVOR}"
    cpu_args = _stage_args(stages["torch-cpu"][1])
    cuda_args = _stage_args(stages["torch-cuda"][1])
    assert cpu_args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert cuda_args["TORCH_INDEX_URL"] == "https://pypi.org/simple"
    for flavour in ("torch-cpu", "torch-cuda"):
        runs = " ".join(c.value[0] for c in stages[flavour][1] if c.cmd == "RUN")
        assert '--index-url "${TORCH_INDEX_URL}" torch torchvision' in runs, flavour


def test_the_package_is_installed_with_its_weights(
    commands: tuple[dockerfile.Command, ...],
) -> None:
    stages = {name: ins for _, name, ins in _stages(commands)}
    build = stages["build"]
    copied = {Path(src).name for c in build if c.cmd == "COPY" for src in c.value[:-1]}
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    assert packages <= copied, f"packages not copied into the image: {packages - copied}"
    assert {"pyproject.toml", "README.md"} <= copied
    install = " ".join(c.value[0] for c in build if c.cmd == "RUN")
    assert "pip install /src" in install
    assert " -e " not in install, "an editable install would leave the weights outside the image"
    # The build fails unless the shipped weights load.
    assert "Scorer.load(" in install
    assert "weights/*.pt" in pyproject["tool"]["setuptools"]["package-data"]["model"]


def test_runtime_stage_is_the_default_target_and_runs_unprivileged(
    commands: tuple[dockerfile.Command, ...],
) -> None:
    stages = _stages(commands)
    base, name, runtime = stages[-1]
    assert name == "runtime", "the last stage is what a plain `docker build` produces"
    assert base == "${PYTHON_IMAGE}"
    users = [c.value[0] for c in runtime if c.cmd == "USER"]
    assert users, "no USER: the container would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root uid (runAsNonRoot)"
    copies = [c for c in runtime if c.cmd == "COPY"]
    assert any("--from=build" in c.flags for c in copies)


def test_entrypoint_command_and_healthcheck_are_usqa_verbs(
    commands: tuple[dockerfile.Command, ...],
) -> None:
    runtime = _stages(commands)[-1][2]
    entry = next(c for c in runtime if c.cmd == "ENTRYPOINT")
    assert entry.json and entry.value[-1] == "usqa"
    cmd = next(c for c in runtime if c.cmd == "CMD")
    assert cmd.json
    assert_usqa_command(list(cmd.value), "Dockerfile CMD")
    health = next(c for c in runtime if c.cmd == "HEALTHCHECK")
    assert health.value[0] == "CMD"
    flags = dict(f.lstrip("-").split("=", 1) for f in health.flags)
    assert {"interval", "timeout", "start-period", "retries"} <= set(flags)
    # Exec form: ["usqa", "health", ...]
    probe = health.original.split("CMD", 1)[1].strip()
    argv = [a.strip().strip('"') for a in probe.strip("[]").split(",")]
    assert argv[0] == "usqa"
    assert_usqa_command(argv[1:], "Dockerfile HEALTHCHECK")


def test_environment_names_real_settings(commands: tuple[dockerfile.Command, ...]) -> None:
    runtime = _stages(commands)[-1][2]
    names = []
    for c in runtime:
        if c.cmd == "ENV":
            names += [c.value[i] for i in range(0, len(c.value), 2)]
    usqa = {n for n in names if n.startswith("USQA_")}
    assert usqa, "the image sets no USQA_* defaults"
    assert usqa <= setting_variables(), f"not settings: {usqa - setting_variables()}"


def _dockerignore_includes(rel: str, rules: list[str]) -> bool:
    """Docker's rule order: the last matching pattern wins; `!` re-includes. A pattern matches a
    path or any of its parent directories."""
    parts = rel.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for raw in rules:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.rstrip("/")
        alternatives = {pattern, pattern.removeprefix("**/")}
        if any(fnmatch.fnmatchcase(c, p) for c in candidates for p in alternatives):
            included = negate
    return included


def test_dockerignore_sends_sources_and_weights_but_no_secrets_or_data() -> None:
    rules = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for rel in [
        "pyproject.toml",
        "README.md",
        "worker/cli.py",
        "model/__init__.py",
        "dicom_io/__init__.py",
        "db/__init__.py",
        "model/weights/usqa.pt",
    ]:
        assert _dockerignore_includes(rel, rules), f"{rel} is left out of the build context"
    for rel in [
        "tests/conftest.py",
        ".git/HEAD",
        "deploy/usqa.env",
        "usqa.db",
        "worker/__pycache__/cli.cpython-311.pyc",
        "bench/x.py",
        ".venv/bin/python",
    ]:
        assert not _dockerignore_includes(rel, rules), f"{rel} would be sent to the image build"
    for weights in REPO.glob("model/weights/*.pt"):
        assert _dockerignore_includes(weights.relative_to(REPO).as_posix(), rules)

"""systemd units for a plain VM: parsed and checked for the promised hardening, and run through
`systemd-analyze verify` where it is installed (with the ExecStart binary pointed at the `usqa`
of this environment, since verify insists that it exists)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from tests.deploy.deploy_files import SYSTEMD, assert_usqa_command, setting_variables

INSTALLED_USQA = "/opt/usqa/venv/bin/usqa"
SERVICES = (
    "usqa-ingest.service",
    "usqa-listen.service",
    "usqa-worker@.service",
    "usqa-migrate.service",
    "usqa-web.service",
)


def _parse(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values (systemd allows repeated keys)."""
    sections: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    current = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            continue
        assert current is not None, f"{path.name}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not key=value: {line!r}"
        sections[current][key.strip()].append(value.strip())
    return sections


def _usqa_argv(exec_start: str) -> list[str]:
    """The usqa argv of an ExecStart line, shell wrapper included."""
    argv = shlex.split(exec_start)
    if argv[0] == "/bin/sh":
        argv = shlex.split(argv[2].split("exec ", 1)[1])
    assert argv[0] == INSTALLED_USQA, exec_start
    # Values from the env file: the example's defaults.
    substitutions = {
        "${DEPLOY_DROP_DIR}": "/srv/usqa/dropbox",
        '"$DEPLOY_WORKER_CONCURRENCY"': "1",
        "$DEPLOY_WORKER_CONCURRENCY": "1",
    }
    return [substitutions.get(a, a) for a in argv[1:]]


@pytest.mark.parametrize("name", SERVICES)
def test_units_are_hardened_and_restart(name: str) -> None:
    unit = _parse(SYSTEMD / name)
    service = unit["Service"]
    assert service["User"] == ["usqa"]
    assert service["EnvironmentFile"] == ["/etc/usqa/usqa.env"]
    assert service["NoNewPrivileges"] == ["yes"]
    assert service["ProtectSystem"] == ["strict"]
    assert service["PrivateTmp"] == ["yes"]
    assert service["Restart"] == ["on-failure"]
    (exec_start,) = service["ExecStart"]
    assert_usqa_command(_usqa_argv(exec_start), name)
    for value in service.get("Environment", []):
        key = value.split("=", 1)[0]
        assert key in setting_variables(), f"{name}: {key} is not a usqa setting"
    if name not in ("usqa-migrate.service", "usqa-web.service"):
        # The heartbeat feeds systemd's watchdog: a hung or stuck process is restarted.
        assert service["Type"] == ["notify"] and service["NotifyAccess"] == ["main"], name
        assert int(service["WatchdogSec"][0].rstrip("s")) >= 3 * 20, name
        assert "/srv/usqa/dropbox" in service["ReadWritePaths"], name
        assert "usqa-migrate.service" in " ".join(unit["Unit"]["After"]), name
        assert unit["Install"]["WantedBy"] == ["usqa.target"]


def test_review_page_reads_the_drop_folder_only() -> None:
    unit = _parse(SYSTEMD / "usqa-web.service")
    service = unit["Service"]
    assert _usqa_argv(service["ExecStart"][0]) == ["serve"]
    assert "/srv/usqa/dropbox" in service["ReadOnlyPaths"]
    assert "ReadWritePaths" not in service, "the review page never writes to the drop folder"
    assert "usqa-migrate.service" in " ".join(unit["Unit"]["After"])
    assert unit["Install"]["WantedBy"] == ["usqa.target"]


def test_worker_template_uses_its_instance() -> None:
    service = _parse(SYSTEMD / "usqa-worker@.service")["Service"]
    (exec_start,) = service["ExecStart"]
    assert "$((9400 + %i))" in exec_start, "each instance needs its own metrics port"
    assert "--concurrency" in exec_start
    assert any("%i" in v for v in service["Environment"]), "per-instance heartbeat file"
    assert service["KillMode"] == ["mixed"]
    assert int(service["TimeoutStopSec"][0].rstrip("s")) >= 60


def test_migration_is_a_one_shot() -> None:
    service = _parse(SYSTEMD / "usqa-migrate.service")["Service"]
    assert service["Type"] == ["oneshot"] and service["RemainAfterExit"] == ["yes"]
    assert _usqa_argv(service["ExecStart"][0]) == ["db", "upgrade"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    usqa = Path(sys.executable).with_name("usqa")
    assert usqa.is_file() and os.access(usqa, os.X_OK), f"{usqa}: install the project first"
    for unit in SYSTEMD.iterdir():
        text = unit.read_text(encoding="utf-8").replace(INSTALLED_USQA, str(usqa))
        (tmp_path / unit.name).write_text(text, encoding="utf-8")
    (tmp_path / "usqa-worker@1.service").symlink_to(tmp_path / "usqa-worker@.service")
    names = [
        "usqa.target",
        "usqa-migrate.service",
        "usqa-ingest.service",
        "usqa-listen.service",
        "usqa-worker@1.service",
    ]
    for name in names:
        result = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", str(tmp_path / name)],
            capture_output=True,
            text=True,
            check=False,
            cwd=tmp_path,
            timeout=60,
        )
        output = (result.stdout + result.stderr).strip()
        assert result.returncode == 0 and not output, f"{name}:\n{output}"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_catches_a_bad_unit(tmp_path: Path) -> None:
    """The check above would notice a mistake: a misspelt key is reported."""
    text = (SYSTEMD / "usqa-migrate.service").read_text(encoding="utf-8")
    text = text.replace(INSTALLED_USQA, sys.executable).replace("RestartSec=", "RestartSek=")
    bad = tmp_path / "usqa-bad.service"
    bad.write_text(text, encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert "RestartSek" in result.stdout + result.stderr

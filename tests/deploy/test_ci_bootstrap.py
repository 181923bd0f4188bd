"""The README's test command works on a fresh machine: it starts with tests/bootstrap.sh,
which installs what the suite needs beyond Python (Chromium, psql) or says what to install;
.ci/run runs the same bootstrap and then the same `pytest`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.deploy.deploy_files import REPO

BOOTSTRAP = REPO / "tests" / "bootstrap.sh"


def readme_test_command() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("Install and run the tests", 1)[1]
    (command,) = re.findall(r"```bash\n(.*?)\n```", section, re.S)[:1]
    return command.strip()


def test_readme_test_command_bootstraps_then_runs_pytest() -> None:
    steps = [s.strip() for s in readme_test_command().split("&&")]
    assert steps[0] == "tests/bootstrap.sh"
    assert 'pip install -e ".[test]"' in steps and steps[-1] == "pytest"
    assert os.access(BOOTSTRAP, os.X_OK), "tests/bootstrap.sh must stay executable (git mode)"


def test_ci_runs_the_same_bootstrap_and_pytest() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert "tests/bootstrap.sh" in lines
    assert lines.index("tests/bootstrap.sh") < lines.index('python -m pip install -q -e ".[test]"')
    assert lines[-1] == "pytest", "the last step of .ci/run is the README's `pytest`"


def test_bootstrap_finds_what_is_installed() -> None:
    done = subprocess.run(
        ["sh", str(BOOTSTRAP)], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    assert shutil.which("psql") and any(
        shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
    )


def test_bootstrap_says_what_to_install_where_it_cannot(tmp_path: Path) -> None:
    """No browser, no psql, no apt-get: a clear message and exit 1, nothing half done."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id").symlink_to(shutil.which("id") or "/usr/bin/id")
    done = subprocess.run(
        ["/bin/sh", str(BOOTSTRAP)],
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "Chromium" in done.stderr and "psql" in done.stderr
    assert "package manager" in done.stderr and "run the tests again" in done.stderr

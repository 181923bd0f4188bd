"""The HTML report in a real headless Chromium: it opens offline, every chart decodes, the
console stays silent, and the screenshot shows real content. Chromium missing is a
failure (tests/bootstrap.sh installs it, first in the README test command and .ci/run),
never a skip."""

from __future__ import annotations

import re
import subprocess
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from tests.helpers.browser import chromium
from tests.helpers.ledger import Row, bulk_seed, realistic_rows
from worker.cli import main

pytestmark = pytest.mark.integration

UNTIL = date(2025, 3, 2)
GOOD_RGB = (0x3A, 0x92, 0x3A)  # worker.report.charts.GOOD
POOR_RGB = (0xC8, 0x45, 0x3C)


def browse(page: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on ``page`` offline, logging the page console to stderr."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={profile}",
            *extra,
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def near(pixels: np.ndarray, rgb: tuple[int, int, int], tol: int = 12) -> int:
    return int((np.abs(pixels.astype(int) - np.array(rgb)).max(axis=2) <= tol).sum())


def check_offline(html: str) -> None:
    """Nothing in the page may fetch anything: no links, scripts or images by URL."""
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:|//|file:)""", html, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(?:https?:|//)", html, re.I)
    assert "@import" not in html and "<link" not in html.lower()
    assert "<iframe" not in html.lower() and "<object" not in html.lower()


def render(tmp_path: Path, url: str, *args: str) -> tuple[Path, str]:
    page = tmp_path / "report.html"
    assert main(["report", "--database-url", url, "--html", str(page), *args]) == 0
    return page, page.read_text(encoding="utf-8")


def test_report_renders_in_chromium(tmp_path: Path, sqlite_url: str) -> None:
    url = sqlite_url
    rows = realistic_rows(UNTIL, days=45, per_day=40)
    dicom = get_testdata_file("examples_ybr_color.dcm")  # pydicom's real ultrasound cine
    assert dicom is not None
    # the lowest-scoring scan is a real file, so --thumbnails has something to show
    rows.append(Row(UNTIL, 1.0, station="US-RAD-4", path=str(dicom), operator="op-01"))
    bulk_seed(url, rows)
    page, html = render(tmp_path, url, "--thumbnails")
    check_offline(html)
    assert html.count('<img class="chart"') == 4 and 'data-charts="4"' in html
    assert html.count('<img class="thumb"') == 1  # the other files do not exist
    assert "file no longer available" in html
    assert "drift alert(s)</b>" in html and "Station US-RAD-4" in html
    assert "may show burned-in patient details" in html

    dom = browse(page, tmp_path, "--dump-dom", "--window-size=1280,2000")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-charts-rendered="4"' in dom.stdout  # every chart decoded by the browser
    assert console_lines(dom.stderr) == []  # no script error, nothing failed to load

    shot = tmp_path / "report.png"
    done = browse(page, tmp_path, f"--screenshot={shot}", "--window-size=1280,3000")
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    assert console_lines(done.stderr) == []
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (3000, 1280)
    assert pixels.std() > 20  # not blank
    assert (pixels.min(axis=2) < 200).mean() > 0.05  # ink on a good part of the page
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500  # charts, not just text
    assert near(pixels, GOOD_RGB) > 2000  # the green "good" bars of the timeline
    assert near(pixels, POOR_RGB) > 200  # the alerted station and poor bars


def test_no_data_report_renders_in_chromium(tmp_path: Path, sqlite_url: str) -> None:
    url = sqlite_url
    page, html = render(tmp_path, url)
    check_offline(html)
    assert "No scans in the database yet" in html and 'data-charts="0"' in html
    shot = tmp_path / "empty.png"
    done = browse(page, tmp_path, f"--screenshot={shot}", "--window-size=1280,900")
    assert done.returncode == 0 and console_lines(done.stderr) == []
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.std() > 5 and (pixels.min(axis=2) < 128).mean() > 0.002  # text shows

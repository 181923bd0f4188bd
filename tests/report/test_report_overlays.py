"""`usqa report --html --thumbnails` puts a saliency overlay (model/saliency.py) beside the
thumbnail of each lowest-scoring scan whose file is still the scored content: the overlay
images decode, in Python and in headless Chromium, with a silent console; a file changed
since it was scored gets neither thumbnail nor overlay."""

from __future__ import annotations

import base64
import io
import re
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import db
from model.geometry import linear
from model.protocols import DefectProtocol
from tests.helpers.ledger import Row, seed
from tests.report.test_report_html import browse, check_offline, console_lines
from worker.cli import main
from worker.report.thumbnails import REPLACED

pytestmark = pytest.mark.integration

DAY = date(2025, 3, 2)


def _shadowed(size: int = 128) -> np.ndarray:
    """A small synthetic scan (smooth speckle) with contact-loss shadowing at the left."""
    rng = np.random.default_rng(3)
    speckle = rng.rayleigh(60.0, (size, size)).clip(0, 255).astype(np.uint8)
    return DefectProtocol().make(speckle, [("shadowing", 0.6)], linear(size, size), [9]).image


def _decode(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as im:
        im.load()
        return np.asarray(im.convert("RGB"))


def test_overlays_beside_the_thumbnails_render_in_chromium(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    db.upgrade(url)
    drop = tmp_path / "drop"
    drop.mkdir()
    paths = [drop / "shadowed.png", drop / "plain.png", drop / "changed.png"]
    Image.fromarray(_shadowed()).save(paths[0])
    for k, p in enumerate(paths[1:], 1):
        noise = np.random.default_rng(k).integers(0, 256, (64, 80), dtype=np.uint8)
        Image.fromarray(noise).save(p)
    seed(url, [Row(DAY, float(i + 1), path=str(p)) for i, p in enumerate(paths)], start=1)
    Image.fromarray(np.zeros((64, 80), dtype=np.uint8)).save(paths[2])  # changed since

    page = tmp_path / "report.html"
    args = ["report", "--database-url", url, "--until", str(DAY), "--html", str(page)]
    assert main([*args, "--thumbnails", "--worst", "5"]) == 0
    html = page.read_text(encoding="utf-8")
    check_offline(html)
    assert html.count('<img class="thumb"') == 2 and html.count('<img class="overlay"') == 2
    assert html.count(REPLACED) == 1
    assert "evidence for a low score" in html and "Grad-CAM" in html
    for uri in re.findall(r'<img class="overlay"[^>]* src="([^"]+)"', html):
        pixels = _decode(uri)
        assert pixels.shape[0] > 50 and pixels.std() > 5  # a real picture

    dom = browse(page, tmp_path, "--dump-dom", "--window-size=1280,2000")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-overlays-rendered="2"' in dom.stdout  # both overlays decoded by the browser
    assert console_lines(dom.stderr) == []

"""``usqa serve`` for real: waitress in a subprocess answers the probe, sends a signed-out
browser to the sign-in, serves a signed-in one, and stops cleanly on SIGTERM; a ledger that
is not upgraded is refused with exit 2; the app builds without loading torch; and the
saliency overlay is computed on request with the model the settings name."""

from __future__ import annotations

import http.client
import http.cookiejar
import io
import os
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from PIL import Image

import db
from db import reviews
from tests.helpers.poll import until
from tests.listener.peers import free_port
from tests.web.conftest import ServedSite
from tests.web.site import Site, settings_for, sign_in
from worker.web import create_app


def fetch(port: int, path: str) -> http.client.HTTPResponse | None:
    """GET ``path`` without following redirects (None while nothing listens)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        answer.read()
        return answer
    except OSError:
        return None
    finally:
        connection.close()


def env() -> dict[str, str]:
    found = {k: v for k, v in os.environ.items() if not k.startswith("USQA_")}
    found["USQA_WEB_INSECURE_COOKIES"] = "1"
    return found


@pytest.mark.integration
def test_usqa_serve_answers_and_stops_on_sigterm(site: Site, tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "worker.cli", "serve", "--port", str(port),
               "--database-url", site.url]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        probe = until(lambda: fetch(port, "/healthz"), 60, "usqa serve to answer /healthz")
        assert probe.status == 200
        home = fetch(port, "/")
        assert home is not None and home.status == 303
        assert home.getheader("Location", "").startswith("/login")
        assert home.getheader("X-Frame-Options") == "DENY"
        image = fetch(port, f"/scans/{site.scans['cine']}/frames/0.png")
        assert image is not None and image.status == 303
        login = fetch(port, "/login")
        assert login is not None and login.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert f"review page listening on http://127.0.0.1:{port}/" in err
    assert "review page stopped" in err


def test_usqa_serve_refuses_a_ledger_that_is_not_upgraded(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "serve", "--port", "0",
         "--database-url", f"sqlite:///{tmp_path}/empty.db"],
        cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "usqa db upgrade" in done.stderr


def test_the_app_is_built_without_torch(site: Site) -> None:
    code = (
        "import sys\n"
        "from worker.settings import load_settings\n"
        "from worker.web import create_app\n"
        f"app = create_app(load_settings({{'database_url': {site.url!r}}}, environ={{}}))\n"
        "client = app.test_client()\n"
        "assert client.get('/healthz').status_code == 200\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_the_saliency_overlay_on_request(site: Site, shadowing_weights: Path) -> None:
    settings = settings_for(site.url, weights=shadowing_weights)  # every frame: shadowing
    client: FlaskClient = create_app(settings).test_client()
    sign_in(client, "vera")
    for _ in range(2):  # the model is loaded once and reused
        answer = client.get(f"/scans/{site.scans['cine']}/overlay.png")
        assert answer.status_code == 200 and answer.mimetype == "image/png"
        width, height = Image.open(io.BytesIO(answer.data)).size
        assert width > height > 0  # two panels side by side: score and first defect
    gone = client.get(f"/scans/{site.scans['gone']}/overlay.png")
    assert gone.status_code == 410
    with db.session_scope(site.url, readonly=True) as session:
        found = reviews.recent_entries(session, action="view_overlay")
    what = "saliency overlay of the first frame"
    assert [(e.scan_id, e.detail) for e in found][::-1] == [
        (site.scans["cine"], what),
        (site.scans["cine"], what),
        (site.scans["gone"], f"{what}: not shown, file no longer available"),
    ]
    broken = create_app(settings_for(site.url, weights=site.drop / "image.png")).test_client()
    sign_in(broken, "vera")
    answer = broken.get(f"/scans/{site.scans['cine']}/overlay.png")
    assert answer.status_code == 503 and answer.mimetype == "image/png"


def test_the_served_site_fixture_serves_a_browser(served_site: ServedSite) -> None:
    """What the browser tests start from: a real server on a free port with the seeded
    site; a cookie-keeping client signs in and sees the poor scans of a room."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    base = served_site.base_url
    with opener.open(f"{base}/login") as answer:
        assert answer.status == 200
    token = next(c.value for c in jar if c.name == "usqa_login")
    form = {"csrf_token": token, "name": "rita", "password": served_site.site.passwords["rita"],
            "next": "/scans?station=US-ER-1&grade=poor"}  # fmt: skip
    with opener.open(f"{base}/login", data=urllib.parse.urlencode(form).encode()) as answer:
        page = answer.read().decode()
    assert answer.url == f"{base}/scans?station=US-ER-1&grade=poor"
    assert f'href="/scans/{served_site.site.scans["cine"]}"' in page

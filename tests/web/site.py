"""A seeded review site for the web tests (and the browser tests): real files in a drop
folder scored in a ledger (sizes and sha256 recorded as the ingester records them, so the
pages show their frames), accounts of each role, the app, a signed-in test client, and a
real waitress server on a free port in a thread.

The scans (``Site.scans``, by name; day :data:`DAY`):

``cine``     pydicom's 30-frame ultrasound cine, US-ER-1, op-07, C5-1: poor 31 (low_gain, noise)
``single``   a one-frame DICOM carrying PatientName/PatientID, US-RAD-3: good 88, no defect
``png``      a PNG, US-ER-1: average 62 (blur)
``gone``     a PNG deleted after scoring, US-ER-1: poor 22 (shadowing)
``changed``  a PNG rewritten after scoring, US-RAD-3: average 55
``failed``   a file that failed, US-RAD-3: no score

Every scan carries :data:`PATIENT_HASH` and :data:`INSTITUTION`, which no page may show.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update
from werkzeug.test import TestResponse

import db
from db import reviews
from db.models import Scan
from tests.helpers.dicom import build, save, smooth_image
from tests.helpers.files import copy_dicom, write_png
from tests.helpers.ledger import Row, seed
from worker.settings import Settings, load_settings

DAY = date(2025, 3, 2)
PATIENT_HASH = "patient:5be3c7a1d9f04e2b8c6a7d1e9f0b3c4a"
INSTITUTION = "Saint Example General Hospital"
PASSWORDS = {
    "vera": "viewer password one",
    "rita": "reviewer password one",
    "adam": "admin password one",
    "riko": "reviewer password two",
}
ROLES = {"vera": "viewer", "rita": "reviewer", "adam": "admin", "riko": "reviewer"}
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass(frozen=True)
class Site:
    """A seeded ledger: its URL, drop folder, scan ids by name and the accounts
    (name -> password; roles in :data:`ROLES`)."""

    url: str
    drop: Path
    scans: dict[str, int]
    passwords: dict[str, str]


def build_site(url: str, root: Path, hashes: dict[str, str]) -> Site:
    """Seed the scans above into the ledger at ``url`` (files under ``root/drop``) and add
    the accounts with the given password hashes (name -> argon2 hash)."""
    drop = root / "drop"
    drop.mkdir(parents=True, exist_ok=True)
    files = {
        "cine": copy_dicom("examples_ybr_color.dcm", drop / "cine.dcm"),
        "single": save(build(smooth_image(64, 80, False), "MONOCHROME2"), drop / "single.dcm"),
        "png": write_png(drop / "image.png", seed=3),
        "gone": write_png(drop / "gone.png", seed=4),
        "changed": write_png(drop / "changed.png", seed=5),
    }
    rows = {
        "cine": Row(DAY, 31.0, station="US-ER-1", operator="op-07", transducer="C5-1",
                    path=str(files["cine"]),
                    defects=(("low_gain", 0.91, 0.8), ("noise", 0.62, 0.5))),
        "single": Row(DAY, 88.0, station="US-RAD-3", operator="op-02", transducer="L12-3",
                      path=str(files["single"])),
        "png": Row(DAY, 62.0, station="US-ER-1", operator="op-02", transducer="L12-3",
                   path=str(files["png"]), defects=(("blur", 0.7, 0.6),)),
        "gone": Row(DAY, 22.0, station="US-ER-1", operator="op-07", transducer="C5-1",
                    path=str(files["gone"]), defects=(("shadowing", 0.95, 1.0),)),
        "changed": Row(DAY, 55.0, station="US-RAD-3", operator="op-07", transducer="L12-3",
                       path=str(files["changed"])),
        "failed": Row(DAY, None, status="failed", station="US-RAD-3"),
    }  # fmt: skip
    ids = dict(zip(rows, seed(url, rows.values(), start=1), strict=True))
    with db.session_scope(url) as session:
        session.execute(
            update(Scan).values(
                patient_id_hash=PATIENT_HASH, institution=INSTITUTION, frame_count=1, kind="image"
            )
        )
        session.execute(
            update(Scan).where(Scan.id.in_([ids["cine"], ids["single"]])).values(kind="dicom")
        )
        session.execute(update(Scan).where(Scan.id == ids["cine"]).values(frame_count=30))
        for name, password_hash in hashes.items():
            reviews.add_user(session, name, ROLES[name], password_hash)
    files["gone"].unlink()
    write_png(files["changed"], seed=6)
    return Site(url, drop, ids, dict(PASSWORDS))


def settings_for(url: str, **overrides: Any) -> Settings:
    """Test settings of the review page: plain-http cookies unless told otherwise."""
    values: dict[str, Any] = {"database_url": url, "web_insecure_cookies": True}
    values.update(overrides)
    return load_settings(values, environ={})


def login_token(client: FlaskClient, secure: bool = False) -> str:
    """The sign-in form's token: GET /login, then its cookie."""
    client.get("/login")
    cookie = client.get_cookie("__Host-usqa_login" if secure else "usqa_login")
    assert cookie is not None, "GET /login set no sign-in form cookie"
    return cookie.value


def sign_in(
    client: FlaskClient, name: str, password: str | None = None, next_path: str = ""
) -> TestResponse:
    """POST the sign-in form as ``name`` (its own password unless given)."""
    token = login_token(client)
    return client.post(
        "/login",
        data={
            "csrf_token": token,
            "name": name,
            "password": PASSWORDS.get(name, "") if password is None else password,
            "next": next_path,
        },
    )


def page_token(client: FlaskClient, path: str = "/scans") -> str:
    """The CSRF token of the signed-in session, read from a page's form."""
    found = CSRF_FIELD.search(client.get(path).get_data(as_text=True))
    assert found is not None, f"no csrf_token field on {path}"
    return found.group(1)


@contextmanager
def serving(app: Flask, host: str = "127.0.0.1") -> Iterator[str]:
    """``app`` on a real waitress server (any free port) in a thread; yields its base URL
    (``http://127.0.0.1:PORT``) and stops it afterwards."""
    from waitress.server import create_server

    server = create_server(app, host=host, port=0, threads=4, asyncore_loop_timeout=0.1)
    thread = threading.Thread(target=server.run, name="review-page", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.effective_port}"
    finally:

        def stop() -> None:  # run by the server's own loop: no race with its select()
            for channel in list(server._map.values()):  # keep-alive connections left open
                if channel is not server and channel is not server.trigger:
                    channel.close()
            server.close()

        server.trigger.pull_trigger(stop)
        thread.join(timeout=10)
        server.task_dispatcher.shutdown()
        assert not thread.is_alive(), "the test review server did not stop"

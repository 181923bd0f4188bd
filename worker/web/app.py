"""The review page's Flask application, built by :func:`create_app` (nothing is built at
import: no app, engine or model).

Server-rendered Jinja2 pages (autoescaped), one stylesheet, no JavaScript. Every request
passes the gate of :mod:`worker.web.auth`; every response gets the headers of
:mod:`worker.web.headers`; errors get the pages of :mod:`worker.web.errors`. Flask's own
cookie session is not used (no secret key): sign-ins live in the ledger, so any replica
serves any request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Flask, Response
from jinja2 import StrictUndefined

from db import reviews
from worker.report.text import shown_text
from worker.settings import Settings
from worker.web import (
    admin,
    agreement,
    auth,
    csrf,
    errors,
    headers,
    health,
    images,
    login,
    scans,
    summary,
)
from worker.web.config import WebConfig
from worker.web.context import user
from worker.web.overlay import Overlays
from worker.web.proxies import TrustedProxies

__all__ = ["create_app"]

MAX_FORM_BYTES = 64 * 1024  # the largest POST body (a rating with its comment is ~3 KiB)


def _shown(value: Any) -> str:
    """Ledger text for a page: ``-`` for nothing, control characters escaped."""
    return "-" if value is None or value == "" else shown_text(str(value))


def _when(value: datetime | None) -> str:
    """A time to the minute: UTC ones say so; naive ones are the scanner's clock."""
    if value is None:
        return "-"
    text = value.strftime("%Y-%m-%d %H:%M")
    return f"{text} UTC" if value.tzinfo is not None else text


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _globals() -> dict[str, Any]:
    signed = user()
    return {
        "current_user": signed,
        "csrf_token": signed.csrf_token if signed is not None else "",
        "csrf_field": csrf.FIELD,
        "may": lambda role: signed is not None and reviews.role_allows(signed.role, role),
    }


def _after(response: Response) -> Response:
    auth.set_session_cookie(response)
    csrf.set_login_cookie(response)
    return headers.secure(response)


def create_app(settings: Settings) -> Flask:
    """The review page for ``settings`` (its ledger, sign-in rules and read limits)."""
    config = WebConfig.from_settings(settings)
    app = Flask(__name__, static_folder="static", template_folder="templates")
    app.config.update(
        SECRET_KEY=None,
        MAX_CONTENT_LENGTH=MAX_FORM_BYTES,
        MAX_FORM_MEMORY_SIZE=MAX_FORM_BYTES,
        TEMPLATES_AUTO_RELOAD=False,
        PROPAGATE_EXCEPTIONS=False,
    )
    app.extensions["usqa"] = config
    app.extensions["usqa.overlays"] = Overlays(settings)
    app.select_jinja_autoescape = lambda filename: True  # type: ignore[method-assign]
    app.jinja_env.undefined = StrictUndefined
    app.jinja_env.filters.update(shown=_shown, when=_when, num=_num, pct=_pct)
    app.context_processor(_globals)
    for module in (login, health, scans, images, summary, agreement, admin):
        app.register_blueprint(module.blueprint)
    app.before_request(auth.gate)
    app.after_request(_after)
    errors.register(app)
    app.wsgi_app = TrustedProxies(app.wsgi_app, config)  # type: ignore[method-assign]
    return app

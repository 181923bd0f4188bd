"""Who is signed in, and the gate every request passes.

A browser is signed in by the ``usqa_session`` cookie: a random token whose sha256 names a
row of ``web_sessions`` (:mod:`db.reviews.sessions`), valid until its lifetime
(USQA_WEB_SESSION_HOURS) or idle time (USQA_WEB_IDLE_MINUTES) runs out, its account is
disabled or its password changed. The cookie is HttpOnly, SameSite=Lax, Path=/ and Secure
(unless USQA_WEB_INSECURE_COOKIES), and lasts as long as the browser session.

Single sign-on: with USQA_WEB_TRUSTED_USER_HEADER, a request from one of the trusted proxies
(:mod:`worker.web.proxies`; from anyone else the header is ignored) that carries the header
is signed in as the account it names, which must exist and be enabled; its role is the
account's. A ledger session is opened for it (audited ``login``), so its forms have a CSRF
token; a header naming another account replaces it. With USQA_WEB_LOGIN_FORM=0 a
session is honoured only together with the header naming its account.

The gate (:func:`gate`, before every request): pages and images need a signed-in account
(else 303 to ``/login?next=<this path>``), every POST needs its CSRF token
(:mod:`worker.web.csrf`), and :func:`requires` checks the role of a view.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Response, g, redirect, request, url_for
from werkzeug.exceptions import Forbidden

import db
from db import reviews
from db.models import User
from db.reviews import SignedIn
from db.reviews.accounts import NAME_MAX
from worker.web import csrf
from worker.web.context import audit, config, ledger, user
from worker.web.proxies import TRUSTED_PEER

__all__ = [
    "PUBLIC",
    "SESSION_COOKIE",
    "gate",
    "requires",
    "safe_next",
    "set_session_cookie",
    "start_signed_in",
]

log = logging.getLogger(__name__)

SESSION_COOKIE = "usqa_session"
# Endpoints open without signing in: the sign-in page, the probe, the stylesheet.
PUBLIC = frozenset({"login.login", "health.healthz", "static"})
_NO_IDENTITY = frozenset({"health.healthz", "static"})

F = TypeVar("F", bound=Callable[..., Any])


class SignOnRefused(Forbidden):
    """The single sign-on header names no enabled account (403)."""

    description = (
        "You are signed in to the hospital's single sign-on, but that name has no enabled "
        "account on this page. Ask a usqa administrator to add it (usqa user add NAME "
        "--role viewer) or to enable it."
    )


def start_signed_in(session: db.Session, account: User, how: str) -> SignedIn:
    """Open a ledger session for ``account`` (audited ``login`` with ``how``); its cookie is
    sent with this response."""
    token, signed = reviews.start_session(session, account, lifetime=config().session_lifetime)
    audit(session, "login", user_name=signed.name, detail=how)
    g.new_session = token
    return signed


def _by_header(name: str, token: str) -> SignedIn:
    with ledger() as session:
        if token:
            current = reviews.resolve_session(session, token, idle=config().idle_timeout)
            if current is not None and current.name == name:
                return current
            reviews.end_session(session, token)
        account = reviews.find_user(session, name)
        signed = None
        if account is None or account.disabled_at is not None:
            why = "no such account" if account is None else "account disabled"
            audit(session, "login_failed", user_name=name, detail=f"single sign-on: {why}")
        else:
            signed = start_signed_in(session, account, "single sign-on (trusted proxy header)")
    if signed is None:
        raise SignOnRefused()
    return signed


def _identify() -> SignedIn | None:
    cfg = config()
    token = request.cookies.get(SESSION_COOKIE, "")
    if cfg.user_header and request.environ.get(TRUSTED_PEER):
        name = request.headers.get(cfg.user_header, "").strip()
        if name:
            return _by_header(name[:NAME_MAX], token)
    if not token or (cfg.user_header and not cfg.password_login):
        if token:
            g.clear_session = True
        return None
    with ledger() as session:
        signed = reviews.resolve_session(session, token, idle=cfg.idle_timeout)
    if signed is None:
        g.clear_session = True
    return signed


def safe_next(value: str | None) -> str | None:
    """``value`` if it is a path on this site (``/scans?station=X``), else None: never
    another site (``//evil``, ``https://evil``, ``/\\evil``), never the sign-in pages."""
    if not value or len(value) > 2000 or not value.startswith("/") or value.startswith("//"):
        return None
    if any(c == "\\" or ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.path in ("/login", "/logout"):
        return None
    return value


def _here() -> str | None:
    if request.method != "GET":
        return None
    query = request.query_string.decode("latin-1")
    return safe_next(request.path + (f"?{query}" if query else ""))


def gate() -> Response | None:
    """Before every request: who is signed in; the sign-in for every page and image; the
    CSRF token of every POST."""
    endpoint = request.endpoint
    if endpoint in _NO_IDENTITY:
        return None
    g.user = _identify()
    if endpoint in PUBLIC or endpoint is None:
        return None
    signed = user()
    if signed is None:
        target = _here()
        login = url_for("login.login", next=target) if target else url_for("login.login")
        return redirect(login, code=303)  # type: ignore[return-value]
    if request.method == "POST":
        csrf.check_session_form(signed)
    return None


def set_session_cookie(response: Response) -> None:
    """After every request: send a new session cookie, or remove a dead one."""
    token = g.get("new_session")
    secure = config().secure_cookies
    if token:
        response.set_cookie(
            SESSION_COOKIE, token, path="/", secure=secure, httponly=True, samesite="Lax"
        )
    elif g.get("clear_session"):
        response.delete_cookie(
            SESSION_COOKIE, path="/", secure=secure, httponly=True, samesite="Lax"
        )


def requires(role: str) -> Callable[[F], F]:
    """A view decorator: 403 unless the signed-in account's role allows ``role``."""

    def wrap(view: F) -> F:
        @wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            signed = user()
            if signed is None or not reviews.role_allows(signed.role, role):
                raise Forbidden(f"This needs the {role} role; your account is a {_role(signed)}.")
            return view(*args, **kwargs)

        return checked  # type: ignore[return-value]

    return wrap


def _role(signed: SignedIn | None) -> str:
    return "visitor" if signed is None else signed.role

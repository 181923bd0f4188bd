"""Forged-request protection (CSRF) for every POST of the review page.

Signed in: the synchronizer token of the ledger session (``web_sessions.csrf_token``, random,
one per sign-in) goes in a hidden ``csrf_token`` field of every form and must come back
with every POST (compared in constant time).

The sign-in form has no session yet: it uses a double-submit cookie. ``GET /login`` sets a
random token (with its time of issue) in a cookie that only this site can set and read:
``__Host-usqa_login`` (Secure, Path=/, no Domain: neither a sibling sub-domain nor a
plain-http page can plant one), HttpOnly, SameSite=Strict, lasting
:data:`LOGIN_FORM_SECONDS`; the form carries the same token. ``POST /login`` is accepted only
when both are present, equal and not older than that. A forged form on another site cannot
read the cookie, so it cannot send the matching field. No server secret is needed, so any
replica accepts a form another replica served.

A refused POST gets 400 with a page that says what to do (:class:`CsrfRefused`).
"""

from __future__ import annotations

import hmac
import re
import secrets
import time

from flask import Response, g, request
from werkzeug.exceptions import BadRequest

from db.reviews import SignedIn
from worker.web.context import config

__all__ = [
    "FIELD",
    "LOGIN_FORM_SECONDS",
    "CsrfRefused",
    "check_login_form",
    "check_session_form",
    "login_cookie_name",
    "login_form_token",
    "set_login_cookie",
]

FIELD = "csrf_token"
LOGIN_FORM_SECONDS = 3600
_LOGIN_TOKEN = re.compile(r"(\d{1,12})\.([A-Za-z0-9_-]{43})")


class CsrfRefused(BadRequest):
    """A POST without the security token of its form (400)."""

    description = (
        "This form was refused: it did not come back with its security token. It may have "
        "been open too long, or been sent from another site. Go back, reload the page and "
        "try again."
    )


def login_cookie_name() -> str:
    """``__Host-usqa_login`` (a cookie only this host can set, over https), or plain
    ``usqa_login`` with USQA_WEB_INSECURE_COOKIES (a ``__Host-`` cookie must be Secure)."""
    return "__Host-usqa_login" if config().secure_cookies else "usqa_login"


def _age(token: str, now: float) -> float | None:
    match = _LOGIN_TOKEN.fullmatch(token)
    return None if match is None else now - int(match.group(1))


def login_form_token() -> str:
    """The token of the sign-in form: the browser's current one while it is fresh (several
    tabs keep working), else a new one that :func:`set_login_cookie` sends."""
    now = time.time()
    current = request.cookies.get(login_cookie_name(), "")
    age = _age(current, now)
    if age is not None and 0 <= age < LOGIN_FORM_SECONDS / 2:
        return current
    token = f"{int(now)}.{secrets.token_urlsafe(32)}"
    g.login_cookie = token
    return token


def set_login_cookie(response: Response) -> None:
    """Send a new sign-in form token chosen during this request (after_request)."""
    token = g.get("login_cookie")
    if token:
        response.set_cookie(
            login_cookie_name(),
            token,
            max_age=LOGIN_FORM_SECONDS,
            path="/",
            secure=config().secure_cookies,
            httponly=True,
            samesite="Strict",
        )


def _same(sent: str, expected: str) -> bool:
    return bool(sent) and hmac.compare_digest(sent.encode("utf-8"), expected.encode("utf-8"))


def check_login_form() -> None:
    """Refuse a sign-in POST whose field and cookie tokens differ or have expired."""
    cookie = request.cookies.get(login_cookie_name(), "")
    age = _age(cookie, time.time())
    if age is None or not 0 <= age <= LOGIN_FORM_SECONDS:
        raise CsrfRefused()
    if not _same(request.form.get(FIELD, ""), cookie):
        raise CsrfRefused()


def check_session_form(signed: SignedIn) -> None:
    """Refuse a signed-in POST without its session's token."""
    if not _same(request.form.get(FIELD, ""), signed.csrf_token):
        raise CsrfRefused()

"""Signing in and out (``/login``, ``/logout``).

A wrong name and a wrong password get the same message, and an unknown name costs the same
password verification as a known one (:func:`worker.web.passwords.verify_nothing`), so the
form does not tell which names exist. A hash made with weaker parameters than today's is
replaced at the next good sign-in.

Rate limit, counted in the audit trail (so it holds across replicas and restarts): once an
account name has :data:`MAX_FAILURES_PER_NAME` failed or refused sign-ins, or a client
address :data:`MAX_FAILURES_PER_CLIENT`, within the last :data:`WINDOW`, further attempts
are refused with 429 (audited ``login_refused``, which counts too: the wait restarts while
attempts go on), whatever the password.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Response, g, redirect, render_template, request, url_for
from werkzeug.exceptions import Forbidden, TooManyRequests

from db import reviews
from db.models import utcnow
from db.reviews.accounts import NAME_MAX
from worker.web import csrf, passwords
from worker.web.auth import SESSION_COOKIE, safe_next, start_signed_in
from worker.web.context import audit, config, ledger, signed_in, user

__all__ = ["MAX_FAILURES_PER_CLIENT", "MAX_FAILURES_PER_NAME", "WINDOW", "blueprint"]

MAX_FAILURES_PER_NAME = 5
MAX_FAILURES_PER_CLIENT = 20
WINDOW = timedelta(minutes=15)
BAD_SIGN_IN = "Wrong name or password."

blueprint = Blueprint("login", __name__)


class SignInRefused(TooManyRequests):
    """Too many failed sign-ins (429)."""

    description = (
        "Too many failed sign-ins for this name or from this computer. Wait 15 minutes and "
        "try again, or ask a usqa administrator to set a new password (usqa user passwd)."
    )


def _page(error: str | None = None, status: int = 200) -> tuple[str, int]:
    cfg = config()
    return (
        render_template(
            "login.html",
            error=error,
            next=safe_next(request.values.get("next")) or "",
            token=csrf.login_form_token(),
            password_login=cfg.password_login,
            single_sign_on=cfg.user_header is not None,
            name=request.form.get("name", "")[:NAME_MAX],
        ),
        status,
    )


def _limited(name: str, client: str | None) -> bool:
    """Whether this attempt is over the limit (then audited ``login_refused``)."""
    with ledger() as session:
        by_name, by_client = reviews.count_failed_logins(
            session, user_name=name or None, client=client, since=utcnow() - WINDOW
        )
        over = by_name >= MAX_FAILURES_PER_NAME or by_client >= MAX_FAILURES_PER_CLIENT
        if over:
            detail = f"rate limit: {by_name} failures for the name, {by_client} from the address"
            audit(session, "login_refused", user_name=name or None, detail=detail)
    return over


def _checked(name: str, password: str) -> str | None:
    """Why the sign-in fails (for the audit trail only), or None when it succeeds."""
    with ledger(readonly=True) as session:
        account = reviews.find_user(session, name) if name else None
        stored = None if account is None else account.password_hash
        disabled = account is not None and account.disabled_at is not None
    if stored is None:
        passwords.verify_nothing(password)
        return "no such account" if account is None else "no password (single sign-on only)"
    if not passwords.verify(stored, password):
        return "wrong password"
    return "account disabled" if disabled else None


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> Response | tuple[str, int]:
    target = safe_next(request.values.get("next")) or url_for("scans.scan_list")
    if request.method == "GET":
        return redirect(target, code=303) if user() is not None else _page()  # type: ignore[return-value]
    csrf.check_login_form()
    if not config().password_login:
        raise Forbidden("Sign in through the hospital's single sign-on.")
    name = request.form.get("name", "").strip()[:NAME_MAX]
    password = request.form.get("password", "")
    if _limited(name, request.remote_addr):
        raise SignInRefused()
    why = _checked(name, password)
    with ledger() as session:
        account = reviews.find_user(session, name) if why is None else None
        if account is None or account.password_hash is None:
            audit(session, "login_failed", user_name=name or None, detail=why or "changed")
        else:
            if passwords.needs_rehash(account.password_hash):
                reviews.set_password_hash(session, name, passwords.hash_password(password))
            old = request.cookies.get(SESSION_COOKIE)
            if old:
                reviews.end_session(session, old)
            start_signed_in(session, account, "password")
    if account is None or account.password_hash is None:
        return _page(BAD_SIGN_IN)
    return redirect(target, code=303)  # type: ignore[return-value]


@blueprint.route("/logout", methods=["POST"])
def logout() -> Response:
    signed = signed_in()
    with ledger() as session:
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            reviews.end_session(session, token)
        audit(session, "logout", user_name=signed.name)
    g.clear_session = True
    return redirect(url_for("login.login", out=1), code=303)  # type: ignore[return-value]

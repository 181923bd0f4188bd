"""Signed-in browser sessions (table ``web_sessions``).

The browser's cookie holds a random 256-bit token; the ledger stores only its sha256, so a
copy of the database signs no one in. Each session has its own CSRF token, placed in every
form and checked on every POST. A session ends at its expiry, at sign-out, or when its account
is disabled or its password changed (:func:`end_user_sessions`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.models import User, WebSession, utcnow

__all__ = [
    "SignedIn",
    "end_session",
    "end_user_sessions",
    "purge_expired",
    "resolve_session",
    "start_session",
]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SignedIn:
    """Who a live session belongs to, and its CSRF token."""

    user_id: int
    name: str
    role: str
    csrf_token: str
    expires_at: datetime


def start_session(
    session: Session, user: User, *, lifetime: timedelta, now: datetime | None = None
) -> tuple[str, SignedIn]:
    """Open a session for ``user``; returns the cookie token (shown once, never stored)."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    row = WebSession(
        token_sha256=_digest(token),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        expires_at=now + lifetime,
    )
    session.add(row)
    user.last_login_at = now
    session.flush()
    return token, SignedIn(user.id, user.name, user.role, row.csrf_token, row.expires_at)


def resolve_session(
    session: Session, token: str, *, idle: timedelta, now: datetime | None = None
) -> SignedIn | None:
    """The live session of ``token``: None when unknown, expired, idle for longer than
    ``idle`` or its account disabled. Records that it was seen."""
    if not token:
        return None
    now = now or utcnow()
    found = session.execute(
        select(WebSession, User)
        .join(User, User.id == WebSession.user_id)
        .where(WebSession.token_sha256 == _digest(token))
    ).first()
    if found is None:
        return None
    row, user = found
    if row.expires_at <= now or row.last_seen_at + idle <= now or user.disabled_at is not None:
        session.delete(row)
        return None
    row.last_seen_at = now
    return SignedIn(user.id, user.name, user.role, row.csrf_token, row.expires_at)


def end_session(session: Session, token: str) -> None:
    """Sign the session of ``token`` out (nothing when there is none)."""
    session.execute(delete(WebSession).where(WebSession.token_sha256 == _digest(token)))


def end_user_sessions(session: Session, user_id: int) -> int:
    """Sign every session of an account out; returns how many there were."""
    result = session.execute(delete(WebSession).where(WebSession.user_id == user_id))
    return int(getattr(result, "rowcount", 0) or 0)


def purge_expired(session: Session, *, now: datetime | None = None) -> int:
    """Delete sessions past their expiry; returns how many."""
    result = session.execute(delete(WebSession).where(WebSession.expires_at <= (now or utcnow())))
    return int(getattr(result, "rowcount", 0) or 0)

"""Per-request helpers shared by the review page's views: the app's configuration, the
signed-in account, the client address, the audit trail and the ledger transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import current_app, g, request

import db
from db import reviews
from db.reviews import SignedIn
from worker.web.config import WebConfig

__all__ = ["audit", "client", "config", "ledger", "signed_in", "user"]


def config() -> WebConfig:
    """The configuration of the running app."""
    found: WebConfig = current_app.extensions["usqa"]
    return found


@contextmanager
def ledger(*, readonly: bool = False, wait: float | None = None) -> Iterator[db.Session]:
    """One transaction on the ledger (committed when the block succeeds); ``wait``: the
    longest wait for a lock or a connection (:func:`db.session_scope`)."""
    with db.session_scope(config().database_url, readonly=readonly, wait=wait) as session:
        yield session


def user() -> SignedIn | None:
    """The signed-in account of this request, or None."""
    found: SignedIn | None = g.get("user")
    return found


def signed_in() -> SignedIn:
    """The signed-in account (the login gate guarantees one on every protected view)."""
    found = user()
    if found is None:  # pragma: no cover - the gate redirects first
        raise RuntimeError("no signed-in account on a protected view")
    return found


def client() -> str | None:
    """The client's address: the TCP peer, or what a trusted proxy forwarded."""
    return request.remote_addr


def audit(
    session: db.Session,
    action: str,
    *,
    scan_id: int | None = None,
    detail: str | None = None,
    user_name: str | None = None,
) -> None:
    """Write one audit entry for this request (the signed-in account unless named)."""
    who = user_name if user_name is not None else getattr(user(), "name", None)
    reviews.record(session, action, user_name=who, scan_id=scan_id, client=client(), detail=detail)

"""Facts about the site that the ledger remembers (table ``site_settings``).

``pseudonym_salt_fingerprint``: operator names and patient ids are stored as HMACs keyed by
USQA_PSEUDONYM_SALT, so a machine started with another salt (or none) silently splits every
operator in two. The ledger keeps a fingerprint of the salt (an HMAC of a fixed text keyed
by the salt: it reveals nothing of the salt and cannot collide with a pseudonym, whose text
starts with a role name) and each scoring process compares its own at start.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import SiteSetting, utcnow
from db.session import session_scope

__all__ = [
    "SALT_FINGERPRINT",
    "SaltCheck",
    "check_salt",
    "check_salt_once",
    "recorded_fingerprint",
    "salt_fingerprint",
]

SALT_FINGERPRINT = "pseudonym_salt_fingerprint"
_MESSAGE = b"usqa pseudonym salt fingerprint\x00v1"

Outcome = Literal["recorded", "same", "changed", "missing", "none"]


def salt_fingerprint(salt: str) -> str:
    """16 hex digits that tell two salts apart without revealing either."""
    return hmac.new(salt.encode("utf-8"), _MESSAGE, hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class SaltCheck:
    """What :func:`check_salt` found. ``outcome``: ``recorded`` (first salt seen, stored),
    ``same``, ``changed`` (another salt than the recorded one; this one is stored now),
    ``missing`` (no salt here, one recorded) or ``none`` (no salt anywhere).
    ``previous*``: the fingerprint recorded before, by whom and when."""

    outcome: Outcome
    fingerprint: str | None
    previous: str | None = None
    previous_by: str | None = None
    previous_at: datetime | None = None


def check_salt(
    session: Session, salt: str | None, *, process: str, now: datetime | None = None
) -> SaltCheck:
    """Compare ``salt``'s fingerprint with the recorded one and record it when it is the
    first or a new one (the caller commits). ``process``: who records it (host:pid)."""
    row = session.get(SiteSetting, SALT_FINGERPRINT, with_for_update=True)
    mine = salt_fingerprint(salt) if salt else None
    if row is None:
        if mine is None:
            return SaltCheck("none", None)
        session.add(
            SiteSetting(
                name=SALT_FINGERPRINT, value=mine, recorded_by=process, recorded_at=now or utcnow()
            )
        )
        session.flush()
        return SaltCheck("recorded", mine)
    before = SaltCheck("same", mine, row.value, row.recorded_by, row.recorded_at)
    if mine is None:
        return SaltCheck("missing", None, row.value, row.recorded_by, row.recorded_at)
    if mine == row.value:
        return before
    row.value, row.recorded_by, row.recorded_at = mine, process, now or utcnow()
    session.flush()
    return SaltCheck("changed", mine, before.previous, before.previous_by, before.previous_at)


def check_salt_once(url: str, salt: str | None, *, process: str) -> SaltCheck:
    """:func:`check_salt` in its own transaction; if another process records the first
    fingerprint at the same moment (a unique-key conflict), compare with that one."""
    for attempt in (1, 2):
        try:
            with session_scope(url) as session:
                return check_salt(session, salt, process=process)
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def recorded_fingerprint(session: Session) -> str | None:
    """The salt fingerprint the ledger holds, or None."""
    return session.scalar(select(SiteSetting.value).where(SiteSetting.name == SALT_FINGERPRINT))

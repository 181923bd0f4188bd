"""Accounts of the review page (table ``users``).

Roles rank ``viewer`` < ``reviewer`` < ``admin``: a viewer browses scans and reports, a
reviewer also rates scans, an admin also reads the audit trail. Login names are staff
names (never a patient's); they are stripped, 1 to 64 printable characters, unique.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import ROLES, User, utcnow
from worker.errors import ConfigError

__all__ = [
    "ROLE_RANK",
    "AccountError",
    "add_user",
    "find_user",
    "list_users",
    "role_allows",
    "set_disabled",
    "set_password_hash",
    "set_role",
]

ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
NAME_MAX = 64


class AccountError(ConfigError):
    """An account change that cannot be made: a bad name or role, a name taken or unknown."""


def role_allows(role: str, needed: str) -> bool:
    """Whether an account with ``role`` may do what ``needed`` may."""
    return ROLE_RANK.get(role, -1) >= ROLE_RANK[needed]


def _checked_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > NAME_MAX or not name.isprintable():
        raise AccountError(
            f"account name {name[:NAME_MAX]!r}: use 1 to {NAME_MAX} printable characters"
        )
    return name


def _checked_role(role: str) -> str:
    if role not in ROLE_RANK:
        raise AccountError(f"role {role!r}: use one of {', '.join(ROLES)}")
    return role


def find_user(session: Session, name: str) -> User | None:
    """The account called ``name`` (exact, after stripping), or None."""
    return session.scalars(select(User).where(User.name == name.strip())).first()


def list_users(session: Session) -> Sequence[User]:
    """Every account, by name."""
    return session.scalars(select(User).order_by(User.name)).all()


def add_user(
    session: Session,
    name: str,
    role: str,
    password_hash: str | None,
    *,
    now: datetime | None = None,
) -> User:
    """Create an account. ``password_hash`` None: it signs in only through the trusted
    proxy header. Raises :class:`AccountError` when the name is taken or invalid."""
    name, role = _checked_name(name), _checked_role(role)
    if find_user(session, name) is not None:
        raise AccountError(f"account {name!r} already exists (usqa user list)")
    now = now or utcnow()
    user = User(
        name=name,
        role=role,
        password_hash=password_hash,
        created_at=now,
        password_changed_at=now if password_hash else None,
    )
    session.add(user)
    session.flush()
    return user


def _existing(session: Session, name: str) -> User:
    user = find_user(session, name)
    if user is None:
        raise AccountError(f"no account {name.strip()!r} (usqa user list)")
    return user


def set_role(session: Session, name: str, role: str) -> User:
    """Give account ``name`` another role."""
    user = _existing(session, name)
    user.role = _checked_role(role)
    return user


def set_password_hash(
    session: Session, name: str, password_hash: str | None, *, now: datetime | None = None
) -> User:
    """Replace the password hash of ``name`` (None: proxy sign-on only)."""
    user = _existing(session, name)
    user.password_hash = password_hash
    user.password_changed_at = (now or utcnow()) if password_hash else None
    return user


def set_disabled(
    session: Session, name: str, disabled: bool, *, now: datetime | None = None
) -> User:
    """Disable (or enable again) account ``name``; its reviews and audit entries stay."""
    user = _existing(session, name)
    user.disabled_at = (now or utcnow()) if disabled else None
    return user

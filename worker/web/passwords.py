"""Passwords of the review page's accounts: argon2id hashes (argon2-cffi, its default cost:
64 MiB of memory, 3 passes), the password rule, and a verification that costs the same
whether or not the account exists.

The ledger stores only the hash (``users.password_hash``); db never sees a password.
"""

from __future__ import annotations

import secrets
import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "MAX_LENGTH",
    "MIN_LENGTH",
    "PasswordRuleError",
    "check_rule",
    "hash_password",
    "needs_rehash",
    "verify",
    "verify_nothing",
]

MIN_LENGTH = 12
MAX_LENGTH = 1024  # longer input is refused before hashing (no hashing of megabytes)

_hasher = PasswordHasher()  # argon2id with the library's defaults
_dummy: str | None = None
_dummy_lock = threading.Lock()


class PasswordRuleError(ValueError):
    """A new password that breaks the rule (too short, too long, the account's name)."""


def check_rule(password: str, name: str) -> None:
    """Raise :class:`PasswordRuleError` unless ``password`` may be set for account ``name``:
    at least :data:`MIN_LENGTH` characters, at most :data:`MAX_LENGTH`, not the name."""
    if len(password) < MIN_LENGTH:
        raise PasswordRuleError(
            f"the password is {len(password)} characters long; use at least {MIN_LENGTH} "
            "(a few unrelated words make a long password that is easy to type)"
        )
    if len(password) > MAX_LENGTH:
        raise PasswordRuleError(f"the password is longer than {MAX_LENGTH} characters")
    if password.strip().casefold() == name.strip().casefold():
        raise PasswordRuleError("the password must not be the account name")


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (salted; a new salt each call)."""
    return _hasher.hash(password)


def verify(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash`` (False for any malformed hash)."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return bool(_hasher.verify(password_hash, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def verify_nothing(password: str) -> None:
    """Spend the time of one verification (against a hash of a random password), so that a
    sign-in with an unknown name takes as long as one with a wrong password."""
    global _dummy
    with _dummy_lock:
        if _dummy is None:
            _dummy = hash_password(secrets.token_urlsafe(24))
        dummy = _dummy
    verify(dummy, password[:MAX_LENGTH])


def needs_rehash(password_hash: str) -> bool:
    """Whether a hash was made with weaker parameters than today's (rehash at sign-in)."""
    try:
        return bool(_hasher.check_needs_rehash(password_hash))
    except (InvalidHashError, ValueError):
        return True

"""``usqa user``: the review page's accounts.

``add NAME --role viewer|reviewer|admin`` (password asked twice; ``--password-stdin`` reads
it from the first line of standard input; ``--no-password``: the account signs in only
through the reverse proxy's single sign-on header), ``list``, ``passwd NAME``, ``role NAME
ROLE``, ``disable NAME`` and ``enable NAME``. Passwords have at least 12 characters
(:mod:`worker.web.passwords`). A new password or a disabled account ends that account's
sign-ins at once. Every change is written to the audit trail (``user_added`` /
``user_changed``, with the operating-system user who made it).

Exit codes: 0 done; 2 usage (an unknown account, a name taken, a password that breaks the
rule, passwords that differ).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from datetime import datetime

import db
from db import reviews
from db.models import ROLES
from worker.commands.options import add_database_option
from worker.errors import ConfigError
from worker.settings import Settings

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "user",
        help="accounts of the review page (usqa serve): add, list, passwd, role, disable",
        description="Manage the accounts of the review page. Roles: viewer (browses scans and "
        "reports), reviewer (also rates scans), admin (also reads the audit trail). Passwords "
        "have at least 12 characters and are stored as argon2id hashes only. A new password "
        "or disabling an account signs it out everywhere at once.",
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True

    add = verbs.add_parser("add", help="create an account")
    add.add_argument("name", help="login name (a staff name, 1 to 64 characters)")
    add.add_argument("--role", required=True, choices=ROLES, help="what the account may do")
    _add_password_options(add)

    listing = verbs.add_parser("list", help="every account: role, created, last sign-in, disabled")
    listing.add_argument("--json", action="store_true", help="print one JSON list")

    passwd = verbs.add_parser("passwd", help="set a new password (signs the account out)")
    passwd.add_argument("name")
    _add_password_options(passwd)

    role = verbs.add_parser("role", help="give an account another role")
    role.add_argument("name")
    role.add_argument("role", choices=ROLES)

    for verb, what in (("disable", "stop an account signing in (and sign it out)"),
                       ("enable", "let a disabled account sign in again")):  # fmt: skip
        verbs.add_parser(verb, help=what).add_argument("name")

    for sub in verbs.choices.values():
        add_database_option(sub)
    return p


def _add_password_options(p: argparse.ArgumentParser) -> None:
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input (for scripts)",
    )
    how.add_argument(
        "--no-password",
        action="store_true",
        help="no password: the account signs in only through the reverse proxy's single "
        "sign-on header (USQA_WEB_TRUSTED_USER_HEADER)",
    )


def _os_user() -> str:
    """Who runs this command, for the audit trail."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid {os.getuid()}"


def _new_hash(args: argparse.Namespace) -> str | None:
    """The hash of the new password (None for ``--no-password``), after the rule check."""
    from worker.web.passwords import PasswordRuleError, check_rule, hash_password

    if args.no_password:
        return None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"New password for {args.name}: ")
        if getpass.getpass("Type it again: ") != password:
            raise ConfigError("the two passwords differ; nothing was changed")
    try:
        check_rule(password, args.name)
    except PasswordRuleError as exc:
        raise ConfigError(f"{exc}; nothing was changed") from None
    return hash_password(password)


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat(sep=" ", timespec="minutes")


def _list(args: argparse.Namespace, url: str) -> int:
    with db.session_scope(url, readonly=True) as session:
        users = reviews.list_users(session)
    rows = [
        {
            "name": u.name,
            "role": u.role,
            "created": _when(u.created_at),
            "last_sign_in": _when(u.last_login_at),
            "disabled": _when(u.disabled_at) if u.disabled_at else "",
            "password": "yes" if u.password_hash else "no (single sign-on only)",
        }
        for u in users
    ]
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("No accounts yet: usqa user add NAME --role reviewer")
        return 0
    header = {
        "name": "Name",
        "role": "Role",
        "created": "Created",
        "last_sign_in": "Last sign-in",
        "disabled": "Disabled",
        "password": "Password",
    }
    widths = {k: max(len(header[k]), *(len(r[k]) for r in rows)) for k in header}
    for row in [header, *rows]:
        print("  ".join(row[k].ljust(widths[k]) for k in header).rstrip())
    return 0


def _change(args: argparse.Namespace, url: str) -> str:
    """Make the change of ``args.verb``; returns what was done, in words."""
    by = f"by {_os_user()} (usqa user {args.verb})"
    password_hash = _new_hash(args) if args.verb in ("add", "passwd") else None
    with db.session_scope(url) as session:
        if args.verb == "add":
            user = reviews.add_user(session, args.name, args.role, password_hash)
            how = "password" if password_hash else "single sign-on only"
            detail = f"role {user.role}, {how}; {by}"
            reviews.record(session, "user_added", user_name=user.name, detail=detail)
            return f"Account {user.name} added: {user.role}, {how}."
        if args.verb == "passwd":
            user = reviews.set_password_hash(session, args.name, password_hash)
            ended = reviews.end_user_sessions(session, user.id)
            what = "password changed" if password_hash else "password removed"
        elif args.verb == "role":
            old = getattr(reviews.find_user(session, args.name), "role", None)
            user = reviews.set_role(session, args.name, args.role)
            ended, what = 0, f"role {old} -> {user.role}"
        elif args.verb == "disable":
            user = reviews.set_disabled(session, args.name, True)
            ended, what = reviews.end_user_sessions(session, user.id), "disabled"
        else:
            user = reviews.set_disabled(session, args.name, False)
            ended, what = 0, "enabled"
        reviews.record(session, "user_changed", user_name=user.name, detail=f"{what}; {by}")
    signed_out = f" ({ended} sign-in{'s' if ended != 1 else ''} ended)" if ended else ""
    return f"Account {user.name}: {what}{signed_out}."


def run(args: argparse.Namespace, settings: Settings) -> int:
    url = settings.database_url
    db.require_current(url)
    if args.verb == "list":
        return _list(args, url)
    try:
        print(_change(args, url))
    except (ConfigError, EOFError) as exc:
        message = str(exc) or "no password was given; nothing was changed"
        print(f"usqa user {args.verb}: {message}", file=sys.stderr)
        return 2
    return 0

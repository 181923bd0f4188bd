"""The audit trail of the review page (table ``audit_log``): every sign-in and failed
sign-in, every view of a scan, an image or an overlay, every rating and account change, with
who, when and from which address. Details name scans by their ledger id, never a patient.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from db.models import AuditEntry, utcnow

__all__ = ["ACTIONS", "count_failed_logins", "recent_entries", "record"]

ACTIONS = (
    "login",
    "login_failed",
    "login_refused",
    "logout",
    "view_scans",
    "view_scan",
    "view_image",
    "view_overlay",
    "view_summary",
    "view_agreement",
    "view_audit",
    "rate",
    "user_added",
    "user_changed",
)
_NAME_MAX = 64
_CLIENT_MAX = 64


def record(
    session: Session,
    action: str,
    *,
    user_name: str | None,
    scan_id: int | None = None,
    client: str | None = None,
    detail: str | None = None,
    now: datetime | None = None,
) -> AuditEntry:
    """Append one entry. ``action`` must be one of :data:`ACTIONS`."""
    if action not in ACTIONS:
        raise ValueError(f"audit action {action!r} is not one of {', '.join(ACTIONS)}")
    entry = AuditEntry(
        at=now or utcnow(),
        user_name=user_name[:_NAME_MAX] if user_name else None,
        action=action,
        scan_id=scan_id,
        client=client[:_CLIENT_MAX] if client else None,
        detail=detail,
    )
    session.add(entry)
    return entry


def count_failed_logins(
    session: Session, *, user_name: str | None, client: str | None, since: datetime
) -> tuple[int, int]:
    """Failed sign-ins since ``since``: (for this account name, from this client address).
    The rate limit reads them from the ledger, so it holds across every replica."""

    def count(*where: object) -> int:
        query = select(func.count()).where(
            AuditEntry.action.in_(("login_failed", "login_refused")),
            AuditEntry.at >= since,
            or_(*where),  # type: ignore[arg-type]
        )
        return int(session.scalar(query) or 0)

    by_name = count(AuditEntry.user_name == user_name[:_NAME_MAX]) if user_name else 0
    by_client = count(AuditEntry.client == client[:_CLIENT_MAX]) if client else 0
    return by_name, by_client


def recent_entries(
    session: Session,
    *,
    limit: int = 200,
    action: str | None = None,
    user_name: str | None = None,
    scan_id: int | None = None,
) -> Sequence[AuditEntry]:
    """The newest entries first, optionally of one action, account or scan."""
    query = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)
    if action:
        query = query.where(AuditEntry.action == action)
    if user_name:
        query = query.where(AuditEntry.user_name == user_name)
    if scan_id is not None:
        query = query.where(AuditEntry.scan_id == scan_id)
    return session.scalars(query).all()

"""The review page's records: accounts, browser sessions, reviewers' ratings and the audit
trail (tables ``users``, ``web_sessions``, ``reviews``, ``review_defects``, ``audit_log``).

One module each:

- :mod:`~db.reviews.accounts`: accounts and roles (the password hash is made by the caller:
  db never hashes or sees a password).
- :mod:`~db.reviews.sessions`: signed-in sessions by the sha256 of their token, with expiry.
- :mod:`~db.reviews.audit`: the audit trail, and the failed sign-ins that the rate limit counts.
- :mod:`~db.reviews.ratings`: a reviewer's rating of a scan, and the rated scans with what each
  model version said of them (what agreement and calibration are computed from).
- :mod:`~db.reviews.browse` and :mod:`~db.reviews.scan`: what the review page reads of the
  scans (the filtered list and its choices; one scan's page and the file of its pictures);
  imported from there, not re-exported here.

Every function takes an open session and never commits. Use it as ``from db import reviews``.
"""

from db.reviews.accounts import (
    ROLE_RANK,
    AccountError,
    add_user,
    find_user,
    list_users,
    role_allows,
    set_disabled,
    set_password_hash,
    set_role,
)
from db.reviews.audit import count_failed_logins, recent_entries, record
from db.reviews.ratings import (
    RatedScan,
    Rating,
    RatingError,
    rated_scans,
    ratings_for_scan,
    save_rating,
)
from db.reviews.sessions import (
    SignedIn,
    end_session,
    end_user_sessions,
    purge_expired,
    resolve_session,
    start_session,
)

__all__ = [
    "ROLE_RANK",
    "AccountError",
    "RatedScan",
    "Rating",
    "RatingError",
    "SignedIn",
    "add_user",
    "count_failed_logins",
    "end_session",
    "end_user_sessions",
    "find_user",
    "list_users",
    "purge_expired",
    "rated_scans",
    "ratings_for_scan",
    "recent_entries",
    "record",
    "resolve_session",
    "role_allows",
    "save_rating",
    "set_disabled",
    "set_password_hash",
    "set_role",
    "start_session",
]

"""The review page (``usqa serve``): QA leads and reviewers browse the scored scans of a
period, station, operator or transducer, see a scan's frames, score, grade and defects (and,
on request, where the evidence lies), rate it, and read the summary of ``usqa report`` and
how well the model agrees with the reviewers. Accounts, sign-in, CSRF and the audit trail
are the ledger's (:mod:`db.reviews`); docs/reviews.md describes the page for its users and
for IT.

One module each: ``app`` (the factory), ``config`` (its settings), ``proxies`` (forwarding
headers from trusted proxies only), ``auth`` (who is signed in; the gate), ``csrf``,
``passwords`` (argon2id), ``login``, ``scans`` (list, scan page, rating), ``frames`` and
``images`` (the pictures), ``overlay`` (saliency, loaded on first use), ``summary``,
``agreement``, ``admin`` (the audit trail), ``health``, ``headers``, ``errors``, ``params``
and ``context`` (per-request helpers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.web.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":  # imported on first use: `import worker.web.passwords` stays light
        from worker.web.app import create_app

        return create_app
    raise AttributeError(f"module 'worker.web' has no attribute {name!r}")

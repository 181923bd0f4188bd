"""Query parameters of the review page, checked: dates, choices from a fixed list, short
texts and page numbers. A bad value gets 400 with a message naming it and what is expected."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import asdict
from datetime import date

from werkzeug.exceptions import BadRequest

from db.models import GRADES
from db.reviews.browse import ScanFilter
from model.defects import DEFECTS

__all__ = ["choice", "day", "describe", "page_number", "scan_filter", "text"]

TEXT_MAX = 128
PAGE_MAX = 100_000


def day(args: Mapping[str, str], name: str) -> date | None:
    """``name`` as a YYYY-MM-DD date (empty: None)."""
    value = args.get(name, "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name}: {value[:40]!r} is not a date; use YYYY-MM-DD") from None


def choice(args: Mapping[str, str], name: str, allowed: Collection[str]) -> str | None:
    """``name`` if it is one of ``allowed`` (empty: None)."""
    value = args.get(name, "").strip()
    if not value:
        return None
    if value not in allowed:
        raise BadRequest(f"{name}: {value[:40]!r} is not one of {', '.join(allowed)}")
    return value


def text(args: Mapping[str, str], name: str) -> str | None:
    """``name`` as given (a station, operator or transducer as stored; empty: None)."""
    value = args.get(name, "").strip()
    if len(value) > TEXT_MAX:
        raise BadRequest(f"{name}: longer than {TEXT_MAX} characters")
    return value or None


def page_number(args: Mapping[str, str]) -> int:
    """``page`` (1, 2, ...; default 1)."""
    value = args.get("page", "").strip() or "1"
    if not value.isdigit() or not 1 <= int(value) <= PAGE_MAX:
        raise BadRequest(f"page: {value[:20]!r} is not a page number")
    return int(value)


def scan_filter(args: Mapping[str, str]) -> ScanFilter:
    """The scan list's filters from the query string."""
    found = ScanFilter(
        since=day(args, "since"),
        until=day(args, "until"),
        station=text(args, "station"),
        operator=text(args, "operator"),
        transducer=text(args, "transducer"),
        grade=choice(args, "grade", GRADES),
        defect=choice(args, "defect", DEFECTS),
    )
    if found.since and found.until and found.since > found.until:
        raise BadRequest(f"the period starts ({found.since}) after it ends ({found.until})")
    return found


def describe(f: ScanFilter) -> str:
    """The filters in use, for the audit trail (``none``: every scored scan)."""
    used = [f"{k}={v}" for k, v in asdict(f).items() if v is not None]
    return " ".join(used) or "no filter"

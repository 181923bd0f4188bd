"""Report queries over the QA views (``qa_scan_scores``, ``qa_scan_outcomes``; see
docs/sql.md): the figures behind ``usqa report``, its CSV/JSON output and its charts.

The functions that take a session never commit. The scored scans of a span of days are
read once, one narrow row per scan (:func:`fetch_scores`), and every figure is computed
from those arrays; a year of a large department is about a million rows. The date filter
is written so that PostgreSQL and SQLite answer it from the existing indexes on
``acquisition_datetime`` and ``received_at``.

Definitions (the same everywhere in usqa):

* a scan's ``day`` is its acquisition date by the scanner's clock, else the UTC date it was
  received; periods are whole days, both ends included;
* the median is the middle score, or the mean of the two middle scores; the percentiles
  5, 25, 75 and 95 are nearest-rank (the score at rank ``ceil(q * n / 100)``);
* the 95 % interval of a mean is Student's t-interval; of a share, Wilson's score interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Date, DateTime, bindparam, text
from sqlalchemy.orm import Session

from db import paths
from db.models import UTCDateTime

__all__ = [
    "DEFAULT_DAYS",
    "DIMENSIONS",
    "GRADES",
    "DayGrades",
    "GroupDay",
    "GroupFigures",
    "Period",
    "ScannedFile",
    "ScoreRows",
    "ScoreStats",
    "WorstScan",
    "current_model_version",
    "daily_grades",
    "daily_group_means",
    "fetch_scores",
    "group_figures",
    "latest_day",
    "outcome_counts",
    "resolve_period",
    "scan_files",
    "score_stats",
    "t_interval",
    "wilson_interval",
    "worst_scans",
]

DEFAULT_DAYS = 30

# ``--by`` choice -> the view column it groups by (a fixed list: never user text in SQL)
DIMENSIONS: dict[str, str] = {
    "station": "station_name",
    "operator": "operator",
    "transducer": "transducer",
    "manufacturer": "manufacturer",
    "body_part": "body_part",
}

GRADES = ("good", "average", "poor")
PENDING = ("queued", "processing")
PERCENTILES = (5, 25, 75, 95)
FETCH_BATCH = 50_000


@dataclass(frozen=True)
class Period:
    """Whole days from ``since`` to ``until``, both included."""

    since: date
    until: date

    @property
    def days(self) -> int:
        return (self.until - self.since).days + 1

    def __str__(self) -> str:
        return f"{self.since.isoformat()} to {self.until.isoformat()}"


# --- figures ------------------------------------------------------------------------------


@dataclass
class ScoreStats:
    """Score figures of a set of scored scans (``None`` where the set is too small)."""

    scans: int = 0
    mean: float | None = None
    sd: float | None = None
    ci_low: float | None = None  # 95 % t-interval of the mean (needs 2), cut to 0..100
    ci_high: float | None = None
    median: float | None = None
    p5: float | None = None
    q1: float | None = None
    q3: float | None = None
    p95: float | None = None
    min: float | None = None
    max: float | None = None
    good: int = 0
    average: int = 0
    poor: int = 0

    def share(self, grade: str) -> float | None:
        """The share (0..1) of scans with ``grade``."""
        return getattr(self, grade) / self.scans if self.scans else None

    def poor_interval(self) -> tuple[float, float] | None:
        """95 % Wilson interval of the poor share."""
        return wilson_interval(self.poor, self.scans)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for grade in GRADES:
            out[f"{grade}_share"] = self.share(grade)
        interval = self.poor_interval()
        out["poor_share_ci_low"], out["poor_share_ci_high"] = interval or (None, None)
        return out


@dataclass
class GroupFigures:
    """One group of the report (``group`` None: the value was not recorded in the files)."""

    group: str | None
    stats: ScoreStats
    received: int = 0
    failed: int = 0
    skipped: int = 0
    pending: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "received": self.received,
            "failed": self.failed,
            "skipped": self.skipped,
            "pending": self.pending,
            **self.stats.to_dict(),
        }


@dataclass(frozen=True)
class DayGrades:
    """Scored scans of one day, per grade, and their mean score."""

    day: date
    scans: int
    good: int
    average: int
    poor: int
    mean: float | None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "day": self.day.isoformat()}


@dataclass(frozen=True)
class GroupDay:
    """Scored scans of one group on one day and their mean score."""

    day: date
    group: str | None
    scans: int
    mean: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "day": self.day.isoformat()}


@dataclass(frozen=True)
class WorstScan:
    """A low-scoring scan: identifiers and scores only, no patient data."""

    scan_id: int
    day: date
    score: float
    grade: str
    min_frame_score: float | None
    frames_scored: int
    station_name: str | None
    manufacturer: str | None
    model_name: str | None
    transducer: str | None
    operator: str | None
    body_part: str | None
    sop_instance_uid: str | None
    model_version: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "day": self.day.isoformat()}


def t_interval(n: int, mean: float, sd: float, level: float = 0.95) -> tuple[float, float]:
    """The two-sided t-interval of a mean from ``n`` >= 2 values."""
    from scipy.stats import t  # imported on use: scipy is slow to import

    half = float(t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return mean - half, mean + half


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float] | None:
    """The 95 % Wilson score interval of the proportion ``k / n`` (None when ``n`` = 0)."""
    if n <= 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _stats(scores: NDArray[np.float64], grades: NDArray[np.int8]) -> ScoreStats:
    n = int(scores.size)
    if n == 0:
        return ScoreStats()
    ordered = np.sort(scores)
    mean = float(ordered.mean())
    sd = float(ordered.std(ddof=1)) if n > 1 else None
    ci: tuple[float | None, float | None] = (None, None)
    if sd is not None:  # scores live in 0..100, and so does their mean
        low, high = t_interval(n, mean, sd)
        ci = (max(0.0, low), min(100.0, high))
    ranks = {q: ordered[(q * n + 99) // 100 - 1] for q in PERCENTILES}
    counts = np.bincount(grades, minlength=len(GRADES))
    return ScoreStats(
        scans=n,
        mean=mean,
        sd=sd,
        ci_low=ci[0],
        ci_high=ci[1],
        median=float((ordered[(n - 1) // 2] + ordered[n // 2]) / 2),
        p5=float(ranks[5]),
        q1=float(ranks[25]),
        q3=float(ranks[75]),
        p95=float(ranks[95]),
        min=float(ordered[0]),
        max=float(ordered[-1]),
        good=int(counts[0]),
        average=int(counts[1]),
        poor=int(counts[2]),
    )


# --- reading ------------------------------------------------------------------------------


def _day(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _window_sql() -> str:
    """``day BETWEEN :since AND :until``, plus the same condition spelled on the indexed
    columns so that the databases can use their indexes (``day`` is an expression)."""
    return (
        "((acquired_at >= :since_local AND acquired_at < :until_local) "
        "OR (acquired_at IS NULL AND received_at >= :since_utc AND received_at < :until_utc)) "
        "AND day BETWEEN :since AND :until"
    )


def _window_params(since: date, until: date) -> dict[str, Any]:
    end = until + timedelta(days=1)
    return {
        "since": since,
        "until": until,
        "since_local": datetime.combine(since, time()),
        "until_local": datetime.combine(end, time()),
        "since_utc": datetime.combine(since, time(), UTC),
        "until_utc": datetime.combine(end, time(), UTC),
    }


def _window_query(sql: str) -> Any:
    return text(sql).bindparams(
        bindparam("since", type_=Date),
        bindparam("until", type_=Date),
        bindparam("since_local", type_=DateTime()),
        bindparam("until_local", type_=DateTime()),
        bindparam("since_utc", type_=UTCDateTime()),
        bindparam("until_utc", type_=UTCDateTime()),
    )


def _tune(session: Session) -> None:
    """PostgreSQL: no JIT compilation for the report's few large reads (it costs more
    than it saves here). Only for this transaction."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL jit = off"))


@dataclass
class ScoreRows:
    """The scored scans of a span of days, one array entry per scan. Group columns are
    integer codes into ``labels[dimension]``; ``grade`` indexes :data:`GRADES`;
    ``version`` indexes ``versions``; ``day`` holds ``date.toordinal()`` values."""

    scan_id: NDArray[np.int64]
    day: NDArray[np.int64]
    score: NDArray[np.float64]
    grade: NDArray[np.int8]
    version: NDArray[np.int32]
    versions: list[str]
    codes: dict[str, NDArray[np.int32]]
    labels: dict[str, list[str | None]]

    def __len__(self) -> int:
        return int(self.score.size)

    def mask(
        self,
        *,
        since: date | None = None,
        until: date | None = None,
        model_version: str | None = None,
    ) -> NDArray[np.bool_]:
        """The scans of ``since``..``until`` scored by ``model_version`` (None: any)."""
        keep = np.ones(len(self), dtype=bool)
        if since is not None:
            keep &= self.day >= since.toordinal()
        if until is not None:
            keep &= self.day <= until.toordinal()
        if model_version is not None:
            code = self.versions.index(model_version) if model_version in self.versions else -1
            keep &= self.version == code
        return keep

    def version_counts(self, keep: NDArray[np.bool_]) -> dict[str, int]:
        """Scans per model version among ``keep``, most used first."""
        counts = np.bincount(self.version[keep], minlength=len(self.versions))
        pairs = [(v, int(n)) for v, n in zip(self.versions, counts, strict=True) if n]
        return dict(sorted(pairs, key=lambda kv: (-kv[1], kv[0])))


def fetch_scores(session: Session, since: date, until: date) -> ScoreRows:
    """Read the scored scans of ``since``..``until`` (every model version)."""
    columns = ", ".join(DIMENSIONS.values())
    query = _window_query(
        "SELECT scan_id, day, CAST(score AS DOUBLE PRECISION) AS score, grade, "
        f"model_version, {columns} FROM qa_scan_scores WHERE {_window_sql()}"
    )
    _tune(session)
    # A client-side cursor: a server-side one makes PostgreSQL plan for the first rows
    # (cursor_tuple_fraction) and is two times slower here; rows become objects in batches.
    result = session.execute(query, _window_params(since, until))
    columns_out: list[list[Any]] = [[] for _ in range(5 + len(DIMENSIONS))]
    for batch in result.partitions(FETCH_BATCH):
        for target, column in zip(columns_out, zip(*batch, strict=True), strict=True):
            target.extend(column)
    ids, days, scores, grades, versions, *groups = columns_out
    day_of = {value: _day(value).toordinal() for value in set(days)}
    grade_index = {g: i for i, g in enumerate(GRADES)}
    version_codes: dict[Any, int] = {}
    codes: dict[str, NDArray[np.int32]] = {}
    labels: dict[str, list[str | None]] = {}
    for dim, values in zip(DIMENSIONS, groups, strict=True):
        index: dict[Any, int] = {}
        codes[dim] = np.fromiter(
            (index.setdefault(v, len(index)) for v in values), dtype=np.int32, count=len(values)
        )
        labels[dim] = [None if v is None else str(v) for v in index]
    return ScoreRows(
        scan_id=np.asarray(ids, dtype=np.int64),
        day=np.fromiter((day_of[d] for d in days), dtype=np.int64, count=len(days)),
        score=np.asarray(scores, dtype=np.float64),
        grade=np.fromiter((grade_index[g] for g in grades), dtype=np.int8, count=len(grades)),
        version=np.fromiter(
            (version_codes.setdefault(v, len(version_codes)) for v in versions),
            dtype=np.int32,
            count=len(versions),
        ),
        versions=[str(v) for v in version_codes],
        codes=codes,
        labels=labels,
    )


# --- periods and model versions ---------------------------------------------------------


def latest_day(session: Session, not_after: date) -> date | None:
    """The most recent day with any received scan, not after ``not_after`` (a scanner
    whose clock runs ahead must not drag the default period into the future)."""
    end = not_after + timedelta(days=1)
    acquired = session.execute(
        text("SELECT MAX(acquired_at) FROM qa_scan_outcomes WHERE acquired_at < :end").bindparams(
            bindparam("end", type_=DateTime())
        ),
        {"end": datetime.combine(end, time())},
    ).scalar()
    received = session.execute(
        text(
            "SELECT MAX(received_at) FROM qa_scan_outcomes "
            "WHERE acquired_at IS NULL AND received_at < :end"
        ).bindparams(bindparam("end", type_=UTCDateTime())),
        {"end": datetime.combine(end, time(), UTC)},
    ).scalar()
    found = []
    if acquired is not None:
        found.append(_day(acquired))
    if received is not None:
        value = received if isinstance(received, datetime) else _parse_utc(received)
        found.append(value.astimezone(UTC).date() if value.tzinfo else value.date())
    return max(found) if found else None


def _parse_utc(value: Any) -> datetime:
    return datetime.fromisoformat(str(value))


def resolve_period(
    session: Session,
    *,
    since: date | None,
    until: date | None,
    today: date,
    default_days: int = DEFAULT_DAYS,
) -> Period | None:
    """The report period. Without ``until``: the latest day with scans (up to ``today``);
    without ``since``: ``default_days`` days up to ``until``. None when no day qualifies
    (nothing received up to ``until``)."""
    if until is None:
        until = latest_day(session, today)
        if until is None:
            return None
    if since is None:
        since = until - timedelta(days=default_days - 1)
    if since > until:
        raise ValueError(f"the period starts ({since}) after it ends ({until})")
    return Period(since, until)


def current_model_version(session: Session) -> str | None:
    """The model version that scored the most recent scan (None: nothing scored yet)."""
    return session.execute(
        text(
            "SELECT model_version FROM qa_scan_scores ORDER BY scored_at DESC, scan_id DESC LIMIT 1"
        )
    ).scalar()


# --- figures from the rows ----------------------------------------------------------------


def _group_of(rows: ScoreRows, dimension: str | None) -> tuple[NDArray[np.int32], list[Any]]:
    if dimension is None:
        return np.zeros(len(rows), dtype=np.int32), [None]
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown grouping {dimension!r}: expected one of {', '.join(DIMENSIONS)}")
    return rows.codes[dimension], rows.labels[dimension]


def score_stats(
    rows: ScoreRows, keep: NDArray[np.bool_], dimension: str | None = None
) -> dict[str | None, ScoreStats]:
    """Score figures per group of ``dimension`` among the scans ``keep`` selects (one
    entry, key None, when ``dimension`` is None)."""
    codes, labels = _group_of(rows, dimension)
    out: dict[str | None, ScoreStats] = {}
    selected = np.flatnonzero(keep)
    if selected.size == 0:
        return out
    order = selected[np.argsort(codes[selected], kind="stable")]
    sorted_codes = codes[order]
    bounds = np.flatnonzero(np.diff(sorted_codes)) + 1
    for chunk in np.split(order, bounds):
        label = labels[int(codes[chunk[0]])]
        out[label] = _stats(rows.score[chunk], rows.grade[chunk])
    return out


def outcome_counts(
    session: Session, period: Period, dimension: str | None = None
) -> dict[str | None, dict[str, int]]:
    """Received scans of ``period`` per group and status (every model version: a file that
    fails to decode has no score to tell the versions apart)."""
    col = "NULL" if dimension is None else DIMENSIONS[dimension]
    rows = session.execute(
        _window_query(
            f"SELECT {col} AS grp, status, COUNT(*) AS n FROM qa_scan_outcomes "
            f"WHERE {_window_sql()} GROUP BY 1, 2"
        ),
        _window_params(period.since, period.until),
    ).all()
    out: dict[str | None, dict[str, int]] = {}
    for grp, status, n in rows:
        out.setdefault(None if grp is None else str(grp), {})[str(status)] = int(n)
    return out


def group_figures(
    rows: ScoreRows,
    keep: NDArray[np.bool_],
    counts: dict[str | None, dict[str, int]],
    dimension: str | None = None,
) -> list[GroupFigures]:
    """Score figures (of the scans ``keep`` selects) and outcome counts per group, lowest
    mean score first; groups with no scored scan last, by name."""
    stats = score_stats(rows, keep, dimension)
    groups = []
    for key in set(stats) | set(counts):
        per_status = counts.get(key, {})
        groups.append(
            GroupFigures(
                group=key,
                stats=stats.get(key, ScoreStats()),
                received=sum(per_status.values()),
                failed=per_status.get("failed", 0),
                skipped=per_status.get("skipped", 0),
                pending=sum(per_status.get(s, 0) for s in PENDING),
            )
        )
    groups.sort(
        key=lambda g: (
            g.stats.mean is None,
            g.stats.mean if g.stats.mean is not None else 0.0,
            g.group is None,
            g.group or "",
        )
    )
    return groups


def daily_grades(rows: ScoreRows, keep: NDArray[np.bool_]) -> list[DayGrades]:
    """Scored scans per day and grade among ``keep`` (days without scans left out)."""
    out = []
    days = rows.day[keep]
    grades = rows.grade[keep]
    scores = rows.score[keep]
    for ordinal in np.unique(days):
        on_day = days == ordinal
        counts = np.bincount(grades[on_day], minlength=len(GRADES))
        out.append(
            DayGrades(
                day=date.fromordinal(int(ordinal)),
                scans=int(on_day.sum()),
                good=int(counts[0]),
                average=int(counts[1]),
                poor=int(counts[2]),
                mean=float(scores[on_day].mean()),
            )
        )
    return out


def daily_group_means(rows: ScoreRows, keep: NDArray[np.bool_], dimension: str) -> list[GroupDay]:
    """Scored scans and mean score per day and group of ``dimension``, by day."""
    codes, labels = _group_of(rows, dimension)
    days = rows.day[keep]
    groups = codes[keep]
    scores = rows.score[keep]
    out: list[GroupDay] = []
    if days.size == 0:
        return out
    key = days * (len(labels) + 1) + groups
    uniq, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=scores)
    for k, n, total in zip(uniq, counts, sums, strict=True):
        ordinal, code = divmod(int(k), len(labels) + 1)
        out.append(GroupDay(date.fromordinal(ordinal), labels[code], int(n), float(total / n)))
    out.sort(key=lambda g: (g.day, g.group is None, g.group or ""))
    return out


def worst_scans(
    session: Session, rows: ScoreRows, keep: NDArray[np.bool_], limit: int = 20
) -> list[WorstScan]:
    """The ``limit`` lowest-scoring scans among ``keep`` (ties: lowest scan id first)."""
    selected = np.flatnonzero(keep)
    if selected.size == 0 or limit <= 0:
        return []
    order = np.lexsort((rows.scan_id[selected], rows.score[selected]))[:limit]
    ids = [int(i) for i in rows.scan_id[selected[order]]]
    found = session.execute(
        text(
            "SELECT scan_id, day, CAST(score AS DOUBLE PRECISION) AS score, grade, "
            "CAST(min_frame_score AS DOUBLE PRECISION) AS min_frame_score, frames_scored, "
            "station_name, manufacturer, model_name, transducer, operator, body_part, "
            "sop_instance_uid, model_version FROM qa_scan_scores WHERE scan_id IN :ids"
        ).bindparams(bindparam("ids", expanding=True)),
        {"ids": ids},
    ).mappings()
    by_id = {}
    for r in found:
        by_id[int(r["scan_id"])] = WorstScan(
            scan_id=int(r["scan_id"]),
            day=_day(r["day"]),
            score=float(r["score"]),
            grade=str(r["grade"]),
            min_frame_score=None if r["min_frame_score"] is None else float(r["min_frame_score"]),
            frames_scored=int(r["frames_scored"]),
            station_name=r["station_name"],
            manufacturer=r["manufacturer"],
            model_name=r["model_name"],
            transducer=r["transducer"],
            operator=r["operator"],
            body_part=r["body_part"],
            sop_instance_uid=r["sop_instance_uid"],
            model_version=str(r["model_version"]),
        )
    return [by_id[i] for i in ids if i in by_id]


@dataclass(frozen=True)
class ScannedFile:
    """Where a scan's file may be now (its new path if it was moved after scoring, then its
    path on arrival) and what its content was when it was received, so that a thumbnail is
    shown only for that same content. Never shown in a report. ``paths`` as ``os``
    functions take them (from the original bytes of a name stored escaped: db/paths.py)."""

    paths: tuple[str, ...]
    size_bytes: int
    sha256: str


def scan_files(session: Session, scan_ids: Iterable[int]) -> dict[int, ScannedFile]:
    """The files of ``scan_ids`` (for thumbnails), with their recorded size and sha256."""
    ids = sorted(set(scan_ids))
    if not ids:
        return {}
    rows = session.execute(
        text(
            "SELECT id, disposed_path, disposed_path_bytes, path, path_bytes, size_bytes, "
            "sha256 FROM scans WHERE id IN :ids"
        ).bindparams(bindparam("ids", expanding=True)),
        {"ids": ids},
    ).all()
    return {
        int(i): ScannedFile(
            tuple(
                paths.fs_path(p, _bytes(raw))
                for p, raw in ((moved, moved_raw), (path, raw_path))
                if p
            ),
            int(size),
            str(sha),
        )
        for i, moved, moved_raw, path, raw_path, size, sha in rows
    }


def _bytes(value: object) -> bytes | None:
    """A LargeBinary value as bytes (drivers give bytes or memoryview)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return None

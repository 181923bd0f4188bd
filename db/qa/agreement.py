"""How well the model agrees with the department's reviewers, computed from rated scans
(:class:`db.reviews.RatedScan`: one rating beside one model version's result). Computing
only: rendering is :mod:`worker.report.agreement_text` and the review page.

Grades are ordinal, ``poor`` < ``average`` < ``good``. For every group (each model version
on its own; within it all ratings, each reviewer, and each station, operator or transducer
when asked) :func:`agreement_report` gives, each with the count behind it and a 95 %
percentile bootstrap interval:

- **agreement**: the share of ratings whose grade is the model's grade;
- **kappa**: Cohen's kappa with *linear* weights between the model's grade and the
  reviewer's (one grade apart counts as half a disagreement, good against poor as a whole
  one). Linear rather than quadratic: with only three grades, quadratic weights count a
  one-grade miss as a quarter of a disagreement and so rate a model that is always one grade
  off almost as well as one that is right; linear weights keep each step apart equal. Kappa
  is undefined (None, with the reason) when the model and the reviewers all use one and the
  same grade: no disagreement could be expected by chance.
- **Spearman**: the rank correlation of the model's 0-100 score with the reviewer's grade
  (ties get average ranks, as in ``scipy.stats.spearmanr``); None when either is constant.
- **per defect**: precision and recall of the defects the model lists against those the
  reviewer sees, with the counts (tp, fp, fn), only over ratings of a model version that
  judges defects (``model_defects_judged``);
- **between reviewers**: where two or more reviewers rated the same scan, each unordered
  pair of their ratings once (model version plays no part: ratings are taken once each),
  the share of pairs with the same grade and the linear-weighted kappa of the pairs. The
  pair table is made symmetric (each pair counts half in each direction), so the figure
  does not depend on which reviewer of a pair is taken first.

The bootstrap resamples *scans* (all ratings of a drawn scan come together, so several
reviewers of one scan are not counted as independent evidence), ``rounds`` times, with a
numpy Generator seeded from ``seed`` and the group's name: the same ratings give the same
interval, whatever other groups there are. Rounds in which a figure is undefined are left
out of its interval; ``rounds=0`` gives no intervals.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy.orm import Session

from db.reviews.ratings import RatedScan, rated_scans

__all__ = [
    "BY_CHOICES",
    "GRADE_ORDER",
    "OVERALL",
    "AgreementReport",
    "DefectAgreement",
    "Figure",
    "GroupAgreement",
    "ReviewerPairs",
    "agreement_report",
    "build_agreement",
    "grade_rank",
    "linear_kappa",
    "weighted_kappa",
]

GRADE_ORDER = ("good", "average", "poor")  # rows and columns of every confusion table
BY_CHOICES = ("station", "operator", "transducer", "reviewer")
OVERALL = "overall"  # the dimension (and group name) of all ratings of one model version
LEVEL = 0.95
_INDEX = {g: i for i, g in enumerate(GRADE_ORDER)}
# linear disagreement weights |i - j| / (k - 1) on the three ordinal grades
_WEIGHTS = np.abs(np.subtract.outer(np.arange(3), np.arange(3))) / 2.0

FloatArray = NDArray[np.float64]


def grade_rank(grade: str) -> int:
    """The ordinal value of a grade: poor 0, average 1, good 2."""
    return 2 - _INDEX[grade]


@dataclass(frozen=True)
class Figure:
    """One figure: ``value`` (None when undefined, ``reason`` says why), the count ``n``
    behind it, and its 95 % bootstrap interval [``low``, ``high``] (None without one)."""

    value: float | None
    n: int
    low: float | None = None
    high: float | None = None
    reason: str | None = None


@dataclass(frozen=True)
class DefectAgreement:
    """One defect, model against reviewers: ``tp`` both name it, ``fp`` only the model,
    ``fn`` only the reviewer. Precision's n is tp + fp, recall's tp + fn."""

    defect: str
    tp: int
    fp: int
    fn: int
    precision: Figure
    recall: Figure


@dataclass(frozen=True)
class GroupAgreement:
    """The model (one version) against the reviewers in one group. ``dimension``:
    ``overall`` (``group`` is ``overall`` too), ``reviewer``, ``station``, ``operator`` or
    ``transducer``; ``group`` None: the scans where that field was not recorded.
    ``confusion[i][j]``: ratings with reviewer grade ``GRADE_ORDER[i]`` and model grade
    ``GRADE_ORDER[j]``. ``accepted``: ratings that accepted the result shown as it was.
    ``defect_ratings``: ratings whose model version judges defects (the per-defect n)."""

    model_version: str
    dimension: str
    group: str | None
    ratings: int
    scans: int
    accepted: int
    agreement: Figure
    kappa: Figure
    spearman: Figure
    confusion: tuple[tuple[int, ...], ...]
    defect_ratings: int
    defects: tuple[DefectAgreement, ...]


@dataclass(frozen=True)
class ReviewerPairs:
    """Reviewers against each other: unordered pairs of ratings of the same scan.
    ``dimension`` ``overall``, ``reviewer`` (pairs that include that reviewer) or the
    station, operator or transducer of the scans."""

    dimension: str
    group: str | None
    pairs: int
    scans: int
    agreement: Figure
    kappa: Figure
    confusion: tuple[tuple[float, ...], ...]  # symmetric: halves where grades differ


@dataclass(frozen=True)
class AgreementReport:
    """Everything the agreement tables show. ``groups``: per model version (most ratings
    first), its overall group, then per reviewer, then per ``by`` group.
    ``model_versions``: ratings per version."""

    by: str | None
    weights: str
    rounds: int
    seed: int
    level: float
    ratings: int
    scans: int
    reviewers: tuple[str, ...]
    model_versions: dict[str, int]
    groups: tuple[GroupAgreement, ...]
    between_reviewers: tuple[ReviewerPairs, ...]

    def group(
        self, model_version: str, dimension: str = OVERALL, group: str | None = OVERALL
    ) -> GroupAgreement | None:
        """One group's figures, or None when it has no ratings."""
        for g in self.groups:
            if (g.model_version, g.dimension, g.group) == (model_version, dimension, group):
                return g
        return None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists when dumped)."""
        return asdict(self)


# --- the figures, vectorised over bootstrap rounds -------------------------------------------


def linear_kappa(conf: FloatArray) -> FloatArray:
    """Linear-weighted kappa of confusion tables ``(..., 3, 3)`` (rows and columns in
    :data:`GRADE_ORDER`); NaN where undefined."""
    total = conf.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = conf / total[..., None, None]
        rows, cols = observed.sum(axis=-1), observed.sum(axis=-2)
        expected = rows[..., :, None] * cols[..., None, :]
        d_obs = (observed * _WEIGHTS).sum(axis=(-2, -1))
        d_exp = (expected * _WEIGHTS).sum(axis=(-2, -1))
        kappa = 1.0 - d_obs / d_exp
    return np.where((total > 0) & (d_exp > 1e-12), kappa, np.nan)


def _share_same(conf: FloatArray) -> FloatArray:
    total = conf.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.trace(conf, axis1=-2, axis2=-1) / total


def _ranks(values: FloatArray, weights: FloatArray) -> FloatArray:
    """Average ranks (ties share the mean of their ranks) of ``values`` in the sample
    where value i occurs ``weights[r, i]`` times, per round r: what ``rankdata`` gives on
    the repeated values, without repeating them."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)] - 1
    cum = np.cumsum(weights[:, order], axis=1)
    before = np.where(starts > 0, cum[:, np.maximum(starts - 1, 0)], 0.0)
    tied = cum[:, ends] - before
    group_rank = before + (tied + 1.0) / 2.0
    member = np.repeat(np.arange(len(starts)), ends - starts + 1)
    ranks = np.empty_like(weights)
    ranks[:, order] = group_rank[:, member]
    return ranks


def _spearman(x: FloatArray, y: FloatArray, weights: FloatArray) -> FloatArray:
    """Spearman's rho per round of ``weights`` (multiplicities); NaN where x or y is
    constant in that round."""
    rx, ry = _ranks(x, weights), _ranks(y, weights)
    total = weights.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        dx = rx - (weights * rx).sum(axis=1, keepdims=True) / total
        dy = ry - (weights * ry).sum(axis=1, keepdims=True) / total
        vx, vy = (weights * dx * dx).sum(axis=1), (weights * dy * dy).sum(axis=1)
        rho = (weights * dx * dy).sum(axis=1) / np.sqrt(vx * vy)
    return np.where((vx > 1e-9) & (vy > 1e-9), np.clip(rho, -1.0, 1.0), np.nan)


def _ratio(num: FloatArray, den: FloatArray) -> FloatArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def weighted_kappa(first: Sequence[str], second: Sequence[str]) -> float | None:
    """Linear-weighted Cohen's kappa between two equally long sequences of grades (None
    when undefined: no grades, or both use only one and the same grade)."""
    if len(first) != len(second):
        raise ValueError(f"{len(first)} grades against {len(second)}: need pairs")
    conf = np.zeros((3, 3))
    for a, b in zip(first, second, strict=True):
        conf[_INDEX[a], _INDEX[b]] += 1
    value = float(linear_kappa(conf))
    return None if np.isnan(value) else value


# --- resampling ------------------------------------------------------------------------------


def _resampled(
    scan_index: NDArray[np.int64], n_scans: int, rounds: int, key: str, seed: int
) -> FloatArray:
    """Row weights ``(1 + rounds, rows)``: round 0 is the sample itself, each later one a
    draw of ``n_scans`` scans with replacement (a row counts as often as its scan)."""
    weights = np.ones((1, len(scan_index)))
    if rounds <= 0:
        return weights
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    counts = rng.multinomial(n_scans, np.full(n_scans, 1.0 / n_scans), size=rounds)
    return np.vstack([weights, counts[:, scan_index].astype(np.float64)])


def _figure(values: FloatArray, n: int, reason: str | None, rounds: int) -> Figure:
    """Round 0 of ``values`` is the figure; the rest its bootstrap distribution."""
    point = float(values[0])
    if np.isnan(point):
        return Figure(None, n, reason=reason)
    boot = values[1:][~np.isnan(values[1:])] if rounds > 0 else values[:0]
    if boot.size == 0:
        return Figure(point, n)
    tail = (1.0 - LEVEL) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail])
    return Figure(point, n, float(low), float(high))


def _scan_index(scan_ids: Sequence[int]) -> tuple[NDArray[np.int64], int]:
    unique, index = np.unique(np.asarray(scan_ids, dtype=np.int64), return_inverse=True)
    return index.astype(np.int64), len(unique)


def _one_hot(rows_idx: Sequence[int], cols_idx: Sequence[int]) -> FloatArray:
    cells = np.zeros((len(rows_idx), 9))
    cells[np.arange(len(rows_idx)), np.asarray(rows_idx) * 3 + np.asarray(cols_idx)] = 1.0
    return cells


def _kappa_reason(reviewer: Iterable[str], model: Iterable[str], what: str) -> str:
    used = sorted(set(reviewer) | set(model), key=_INDEX.__getitem__)
    if not used:
        return "no ratings"
    return (
        f"{what} are all {used[0]!r}: kappa needs at least two grades in use (agreement by "
        "chance cannot be told from real agreement)"
    )


def _group_figures(
    version: str,
    dimension: str,
    group: str | None,
    rows: Sequence[RatedScan],
    rounds: int,
    seed: int,
    vocabulary: Sequence[str],
) -> GroupAgreement:
    index, n_scans = _scan_index([r.scan_id for r in rows])
    weights = _resampled(index, n_scans, rounds, f"{version}\0{dimension}\0{group}", seed)
    reviewer = [_INDEX[r.grade] for r in rows]
    model = [_INDEX[r.model_grade] for r in rows]
    conf = (weights @ _one_hot(reviewer, model)).reshape(-1, 3, 3)
    n = len(rows)
    kappa_reason = _kappa_reason(
        (r.grade for r in rows),
        (r.model_grade for r in rows),
        "the reviewers' and the model's grades",
    )
    scores = np.asarray([r.model_score for r in rows], dtype=np.float64)
    ranks = np.asarray([2 - i for i in reviewer], dtype=np.float64)
    if n < 2:
        spearman_reason = "needs at least two ratings"
    elif len(set(reviewer)) == 1:
        spearman_reason = f"every reviewer grade is {rows[0].grade!r}"
    else:
        spearman_reason = "every model score is the same"
    judged = [r for r in rows if r.model_defects_judged]
    return GroupAgreement(
        model_version=version,
        dimension=dimension,
        group=group,
        ratings=n,
        scans=n_scans,
        accepted=sum(r.agrees for r in rows),
        agreement=_figure(_share_same(conf), n, "no ratings", rounds),
        kappa=_figure(linear_kappa(conf), n, kappa_reason, rounds),
        spearman=_figure(_spearman(scores, ranks, weights), n, spearman_reason, rounds),
        confusion=tuple(tuple(int(c) for c in row) for row in conf[0]),
        defect_ratings=len(judged),
        defects=_defect_figures(rows, weights, vocabulary, rounds),
    )


def _defect_figures(
    rows: Sequence[RatedScan], weights: FloatArray, vocabulary: Sequence[str], rounds: int
) -> tuple[DefectAgreement, ...]:
    judged = np.asarray([r.model_defects_judged for r in rows], dtype=bool)
    if not judged.any():
        return ()
    seen = {d for r in rows if r.model_defects_judged for d in r.model_defects | r.defects}
    names = [d for d in vocabulary if d in seen] + sorted(seen - set(vocabulary))
    out = []
    for name in names:
        model = np.asarray([name in r.model_defects for r in rows]) & judged
        reviewer = np.asarray([name in r.defects for r in rows]) & judged
        counts = weights @ np.stack([model & reviewer, model & ~reviewer, ~model & reviewer], 1)
        tp, fp, fn = counts[:, 0], counts[:, 1], counts[:, 2]
        n_tp, n_fp, n_fn = (int(c) for c in counts[0])
        out.append(
            DefectAgreement(
                defect=name,
                tp=n_tp,
                fp=n_fp,
                fn=n_fn,
                precision=_figure(
                    _ratio(tp, tp + fp), n_tp + n_fp, f"the model listed {name} on no scan", rounds
                ),
                recall=_figure(_ratio(tp, tp + fn), n_tp + n_fn, f"no reviewer saw {name}", rounds),
            )
        )
    return tuple(out)


def _pairs(ratings: Sequence[RatedScan]) -> list[tuple[RatedScan, RatedScan]]:
    """Each unordered pair of distinct reviewers' ratings of the same scan, once."""
    by_scan: dict[int, list[RatedScan]] = {}
    for r in ratings:
        by_scan.setdefault(r.scan_id, []).append(r)
    pairs: list[tuple[RatedScan, RatedScan]] = []
    for scan_ratings in by_scan.values():
        scan_ratings.sort(key=lambda r: (r.reviewer, r.review_id))
        for i, a in enumerate(scan_ratings):
            pairs.extend((a, b) for b in scan_ratings[i + 1 :] if b.reviewer != a.reviewer)
    return pairs


def _pair_figures(
    dimension: str,
    group: str | None,
    pairs: Sequence[tuple[RatedScan, RatedScan]],
    rounds: int,
    seed: int,
) -> ReviewerPairs:
    index, n_scans = _scan_index([a.scan_id for a, _ in pairs])
    weights = _resampled(index, n_scans, rounds, f"pairs\0{dimension}\0{group}", seed)
    first = [_INDEX[a.grade] for a, _ in pairs]
    second = [_INDEX[b.grade] for _, b in pairs]
    cells = (_one_hot(first, second) + _one_hot(second, first)) / 2.0
    conf = (weights @ cells).reshape(-1, 3, 3)
    reason = _kappa_reason(
        (a.grade for a, _ in pairs), (b.grade for _, b in pairs), "the grades of every pair"
    )
    return ReviewerPairs(
        dimension=dimension,
        group=group,
        pairs=len(pairs),
        scans=n_scans,
        agreement=_figure(_share_same(conf), len(pairs), "no pairs", rounds),
        kappa=_figure(linear_kappa(conf), len(pairs), reason, rounds),
        confusion=tuple(tuple(float(c) for c in row) for row in conf[0]),
    )


def _field(row: RatedScan, by: str) -> str | None:
    value: str | None = getattr(row, by)
    return value


def _grouped(rows: Sequence[RatedScan], key: Any) -> list[tuple[str | None, list[RatedScan]]]:
    groups: dict[str | None, list[RatedScan]] = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    return sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))


def agreement_report(
    rows: Sequence[RatedScan],
    *,
    by: str | None = None,
    rounds: int = 1000,
    seed: int = 0,
    defects: Sequence[str] = (),
) -> AgreementReport:
    """The agreement figures of ``rows`` (see the module docstring). ``by``: also per
    ``station``, ``operator`` or ``transducer`` (``reviewer`` groups are always given).
    ``defects``: the defect vocabulary, for the order of the per-defect rows (others
    follow by name). ``rounds``: bootstrap rounds (0: no intervals)."""
    if by is not None and by not in BY_CHOICES:
        raise ValueError(f"unknown grouping {by!r}: expected one of {', '.join(BY_CHOICES)}")
    if rounds < 0:
        raise ValueError(f"bootstrap rounds {rounds}: expected 0 or more")
    versions: dict[str, list[RatedScan]] = {}
    for r in rows:
        versions.setdefault(r.model_version, []).append(r)
    order = sorted(versions, key=lambda v: (-len(versions[v]), v))
    groups: list[GroupAgreement] = []
    for version in order:
        mine = versions[version]
        groups.append(_group_figures(version, OVERALL, OVERALL, mine, rounds, seed, defects))
        dimensions = ["reviewer"] + ([by] if by not in (None, "reviewer") else [])
        for dimension in dimensions:
            for value, part in _grouped(mine, lambda r, d=dimension: _field(r, d)):
                groups.append(
                    _group_figures(version, dimension, value, part, rounds, seed, defects)
                )
    ratings = list({r.review_id: r for r in rows}.values())
    return AgreementReport(
        by=by,
        weights="linear",
        rounds=rounds,
        seed=seed,
        level=LEVEL,
        ratings=len(ratings),
        scans=len({r.scan_id for r in ratings}),
        reviewers=tuple(sorted({r.reviewer for r in ratings})),
        model_versions={v: len(versions[v]) for v in order},
        groups=tuple(groups),
        between_reviewers=_between_reviewers(ratings, by, rounds, seed),
    )


def _between_reviewers(
    ratings: Sequence[RatedScan], by: str | None, rounds: int, seed: int
) -> tuple[ReviewerPairs, ...]:
    pairs = _pairs(ratings)
    if not pairs:
        return ()
    out = [_pair_figures(OVERALL, OVERALL, pairs, rounds, seed)]
    names = sorted({r.reviewer for pair in pairs for r in pair})
    for name in names:
        mine = [p for p in pairs if name in (p[0].reviewer, p[1].reviewer)]
        out.append(_pair_figures("reviewer", name, mine, rounds, seed))
    if by not in (None, "reviewer"):
        assert by is not None
        for value, _ in _grouped([a for a, _ in pairs], lambda r: _field(r, by)):
            mine = [p for p in pairs if _field(p[0], by) == value]
            out.append(_pair_figures(by, value, mine, rounds, seed))
    return tuple(out)


def build_agreement(
    session: Session,
    *,
    model_version: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    by: str | None = None,
    rounds: int = 1000,
    seed: int = 0,
    defects: Sequence[str] = (),
) -> AgreementReport:
    """:func:`agreement_report` of the ratings in the ledger rated in [since, until)
    (one model version when ``model_version`` is given)."""
    rows = rated_scans(session, model_version=model_version, since=since, until=until)
    return agreement_report(rows, by=by, rounds=rounds, seed=seed, defects=defects)

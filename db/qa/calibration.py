"""Grade thresholds that best match the reviewers (``usqa calibrate --reviews``), checked on
ratings the search never saw. Computing only: nothing is written here.

A model version's score (0-100) becomes a grade by two thresholds: good at or above
``good``, poor below ``average`` (and always poor when the first defect is ``no_signal``,
whatever the thresholds; see ``model.grading``). Given the ratings of *one* model version:

1. **Split by scan.** Each scan goes to the held-out part when
   ``sha256(f"{seed}:{scan_id}")``, read as a fraction of 1, is below ``held_out`` (default
   0.3); all ratings of a scan go to the same part, and the split of a scan never changes
   as more ratings arrive.
2. **Search exactly on the fit part.** Between two neighbouring scores every threshold
   grades the fit ratings alike, so only the gaps between the sorted distinct scores
   matter: every pair of gaps (average's at or below good's) is tried, the grades it gives
   are compared with the reviewers', and the pair with the highest linear-weighted kappa
   wins (:mod:`db.qa.agreement`); ties go to the higher agreement, then to the pair nearest
   the current thresholds. Within its gap a threshold keeps its current value when that
   lies in the gap; otherwise it takes a round number near the gap's middle.
3. **Check on the held-out part**: agreement and kappa with the current thresholds and
   with the proposal. The proposal is offered for use only when the held-out kappa rises
   and the held-out agreement does not fall.

It needs at least :data:`MIN_FIT` ratings in the fit part and :data:`MIN_HELD_OUT` held
out; with fewer, there is no proposal.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from db.qa.agreement import GRADE_ORDER, FloatArray, linear_kappa
from db.reviews.ratings import RatedScan, rated_scans

__all__ = [
    "DEFAULT_HELD_OUT",
    "MIN_FIT",
    "MIN_HELD_OUT",
    "Calibration",
    "Part",
    "Thresholds",
    "build_calibration",
    "calibrate",
    "is_held_out",
]

DEFAULT_HELD_OUT = 0.3
MIN_FIT = 20
MIN_HELD_OUT = 10
_GOOD, _AVERAGE, _POOR = range(3)  # indices into GRADE_ORDER
_INDEX = {g: i for i, g in enumerate(GRADE_ORDER)}
_EPS = 1e-12


@dataclass(frozen=True)
class Thresholds:
    """Grade thresholds on the 0-100 score: good at or above ``good``, poor below
    ``average``."""

    good: float
    average: float

    def grade_index(self, score: float, first_defect: str | None) -> int:
        if first_defect == "no_signal":
            return _POOR
        if score >= self.good:
            return _GOOD
        return _AVERAGE if score >= self.average else _POOR


@dataclass(frozen=True)
class Part:
    """How one set of thresholds grades one part of the ratings against the reviewers."""

    ratings: int
    scans: int
    agreement: float | None
    kappa: float | None  # linear-weighted; None when undefined


@dataclass(frozen=True)
class Calibration:
    """The proposal and its check. ``verdict``: ``improves`` (held-out kappa up, agreement
    not down: fit to use), ``unchanged`` (the current thresholds are already the best on
    the fit part), ``no_gain`` (the proposal does not do better on held-out ratings) or
    ``too_few`` (not enough ratings: no proposal). ``message`` says it in words."""

    model_version: str
    held_out_share: float
    seed: int
    current: Thresholds
    proposed: Thresholds | None
    fit_before: Part
    fit_after: Part | None
    held_out_before: Part
    held_out_after: Part | None
    verdict: str
    message: str
    min_fit: int = MIN_FIT
    min_held_out: int = MIN_HELD_OUT

    @property
    def usable(self) -> bool:
        """Whether the proposal may be applied (it does better on held-out ratings)."""
        return self.verdict == "improves"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "usable": self.usable}


def is_held_out(scan_id: int, share: float, seed: int = 0) -> bool:
    """Whether scan ``scan_id`` is in the held-out part (a fixed draw per scan and seed)."""
    digest = hashlib.sha256(f"{seed}:{scan_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < share


def _part(rows: Sequence[RatedScan], thresholds: Thresholds) -> Part:
    conf = np.zeros((3, 3))
    for r in rows:
        conf[_INDEX[r.grade], thresholds.grade_index(r.model_score, r.model_first_defect)] += 1
    kappa = float(linear_kappa(conf))
    return Part(
        ratings=len(rows),
        scans=len({r.scan_id for r in rows}),
        agreement=float(np.trace(conf) / conf.sum()) if rows else None,
        kappa=None if math.isnan(kappa) else kappa,
    )


def _nice(low: float, high: float) -> float:
    """A round number strictly between ``low`` and ``high`` near their middle (the middle
    itself when none is)."""
    middle = (low + high) / 2.0
    for digits in (0, 1, 2):
        value = round(middle, digits)
        if low < value < high:
            return float(value)
    return middle


def _gap_value(gaps: FloatArray, k: int, prefer: Sequence[float]) -> float:
    """The threshold chosen in gap ``k``: the first of ``prefer`` that lies in it, else a
    round number near its middle."""
    low, high = float(gaps[k, 0]), float(gaps[k, 1])
    for value in prefer:
        if low < value <= high or (k == 0 and low <= value <= high):
            return value
    return high if high <= low else _nice(low, high)


def _distances(gaps: FloatArray, value: float) -> FloatArray:
    """How far ``value`` lies from each gap (0 inside it)."""
    low, high = gaps[:, 0], gaps[:, 1]
    inside = (low < value) & (value <= high)
    inside[0] = gaps[0, 0] <= value <= gaps[0, 1]
    return np.where(inside, 0.0, np.minimum(np.abs(value - low), np.abs(value - high)))


def _gaps(distinct: FloatArray) -> FloatArray:
    """Rows (low, high): gap k holds the thresholds t with distinct[k-1] < t <= distinct[k]
    (gap 0: 0 <= t <= the lowest score), and a last gap above the highest score when that
    is below 100."""
    edges = np.r_[0.0, distinct]
    gaps = np.stack([edges[:-1], edges[1:]], axis=1)
    if len(distinct) == 0 or distinct[-1] < 100.0:
        top = float(distinct[-1]) if len(distinct) else 0.0
        gaps = np.vstack([gaps, [[top, 100.0]]])
    return gaps


def _search(rows: Sequence[RatedScan], current: Thresholds) -> Thresholds:
    """The thresholds of best kappa on ``rows`` (see the module docstring)."""
    free = [r for r in rows if r.model_first_defect != "no_signal"]
    fixed = np.zeros((3, 3))  # no_signal first: poor whatever the thresholds
    for r in rows:
        if r.model_first_defect == "no_signal":
            fixed[_INDEX[r.grade], _POOR] += 1
    scores = np.asarray([r.model_score for r in free], dtype=np.float64)
    reviewer = np.asarray([_INDEX[r.grade] for r in free], dtype=np.int64)
    distinct = np.unique(scores)
    gaps = _gaps(distinct)
    n_gaps = len(gaps)
    # below[c, k]: ratings of reviewer grade c scored under the thresholds of gap k
    position = np.searchsorted(distinct, scores)
    below = np.zeros((3, n_gaps))
    for c in range(3):
        counts = np.bincount(position[reviewer == c], minlength=len(distinct) + 1)
        below[c] = np.r_[0.0, np.cumsum(counts)][:n_gaps]
    total = np.bincount(reviewer, minlength=3).astype(np.float64)
    to_average, to_good = _distances(gaps, current.average), _distances(gaps, current.good)
    best: tuple[float, float, float, int, int] | None = None
    for i in range(n_gaps):  # average's gap; good's gap is i or above
        j = np.arange(i, n_gaps)
        conf = np.broadcast_to(fixed, (len(j), 3, 3)).copy()
        for c in range(3):
            conf[:, c, _POOR] += below[c, i]
            conf[:, c, _AVERAGE] += below[c, j] - below[c, i]
            conf[:, c, _GOOD] += total[c] - below[c, j]
        kappa = np.round(np.nan_to_num(linear_kappa(conf), nan=-np.inf), 12)
        agree = np.trace(conf, axis1=1, axis2=2)
        dist = to_average[i] + to_good[j]
        k = int(np.lexsort((dist, -agree, -kappa))[0])  # kappa, agreement, nearness
        candidate = (float(kappa[k]), float(agree[k]), float(dist[k]), i, int(j[k]))
        if best is None or _better(candidate, best):
            best = candidate
    assert best is not None
    _, _, _, i, k = best
    if i == k:  # no average grade: one threshold for both
        value = _gap_value(gaps, i, (current.good, current.average))
        return Thresholds(good=value, average=value)
    return Thresholds(
        good=_gap_value(gaps, k, (current.good,)),
        average=_gap_value(gaps, i, (current.average,)),
    )


def _better(
    a: tuple[float, float, float, int, int], b: tuple[float, float, float, int, int]
) -> bool:
    if abs(a[0] - b[0]) > _EPS:
        return a[0] > b[0]
    if abs(a[1] - b[1]) > _EPS:
        return a[1] > b[1]
    return a[2] < b[2] - _EPS


def _verdict(
    before: Part, after: Part, proposed: Thresholds, current: Thresholds
) -> tuple[str, str]:
    n = after.ratings
    if proposed == current:
        return "unchanged", (
            "The current thresholds already match the reviewers best on the fit ratings: "
            "nothing to change."
        )
    if after.kappa is None:
        return "no_gain", (
            f"On the {n} held-out ratings the proposal's kappa is undefined (one grade "
            "only): it is not shown to do better; keep the current thresholds."
        )
    kappa_up = before.kappa is None or after.kappa > before.kappa + _EPS
    agreement_kept = (after.agreement or 0.0) >= (before.agreement or 0.0) - _EPS
    if kappa_up and agreement_kept:
        return "improves", (
            f"On the {n} held-out ratings the proposal agrees better with the reviewers."
        )
    if after.kappa == before.kappa and after.agreement == before.agreement:
        return "no_gain", (
            f"On the {n} held-out ratings the proposal does exactly as well as the current "
            "thresholds (few held-out scores lie between the two): it is not shown to do "
            "better; keep the current thresholds, and collect more ratings before "
            "calibrating again."
        )
    what = "kappa does not rise" if not kappa_up else "fewer ratings agree"
    return "no_gain", (
        f"On the {n} held-out ratings the proposal does not do better ({what}): keep the "
        "current thresholds, and collect more ratings before calibrating again."
    )


def calibrate(
    rows: Sequence[RatedScan],
    current: Thresholds,
    *,
    held_out: float = DEFAULT_HELD_OUT,
    seed: int = 0,
    min_fit: int = MIN_FIT,
    min_held_out: int = MIN_HELD_OUT,
) -> Calibration:
    """Propose thresholds for the ratings ``rows`` of one model version (see the module
    docstring). Raises ValueError for rows of several versions or none, or a held-out
    share outside (0, 1)."""
    versions = {r.model_version for r in rows}
    if len(versions) != 1:
        raise ValueError(
            f"calibrate one model version at a time; got {len(versions)}: "
            f"{', '.join(sorted(versions)) or 'none'}"
        )
    if not 0.0 < held_out < 1.0:
        raise ValueError(f"held-out share {held_out}: expected a fraction between 0 and 1")
    [version] = versions
    fit = [r for r in rows if not is_held_out(r.scan_id, held_out, seed)]
    test = [r for r in rows if is_held_out(r.scan_id, held_out, seed)]
    fit_before, test_before = _part(fit, current), _part(test, current)

    def result(
        proposed: Thresholds | None, fit_after: Part | None, test_after: Part | None,
        verdict: str, message: str,
    ) -> Calibration:  # fmt: skip
        return Calibration(
            model_version=version,
            held_out_share=held_out,
            seed=seed,
            current=current,
            proposed=proposed,
            fit_before=fit_before,
            fit_after=fit_after,
            held_out_before=test_before,
            held_out_after=test_after,
            verdict=verdict,
            message=message,
            min_fit=min_fit,
            min_held_out=min_held_out,
        )

    if len(fit) < min_fit or len(test) < min_held_out:
        return result(
            None,
            None,
            None,
            "too_few",
            f"Too few ratings of model {version} to calibrate: {len(fit)} to fit and "
            f"{len(test)} held out ({len(rows)} in all); at least {min_fit} and "
            f"{min_held_out} are needed. Rate more scans on the review page.",
        )
    proposed = _search(fit, current)
    test_after = _part(test, proposed)
    return result(
        proposed,
        _part(fit, proposed),
        test_after,
        *_verdict(test_before, test_after, proposed, current),
    )


def build_calibration(
    session: Session,
    current: Thresholds,
    *,
    model_version: str | None = None,
    held_out: float = DEFAULT_HELD_OUT,
    seed: int = 0,
) -> tuple[Calibration | None, dict[str, int]]:
    """:func:`calibrate` on the ledger's ratings of ``model_version`` (default: the version
    with the most ratings; ties to the later name), and the ratings per model version. The
    calibration is None when that version has no ratings."""
    rows = rated_scans(session)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.model_version] = counts.get(r.model_version, 0) + 1
    chosen = model_version or max(counts, key=lambda v: (counts[v], v), default=None)
    if chosen is None or chosen not in counts:
        return None, counts
    mine = [r for r in rows if r.model_version == chosen]
    return calibrate(mine, current, held_out=held_out, seed=seed), counts

"""The statistics of the QA report, in one place: the 95 % intervals of a mean (Student's t)
and of a share (Wilson's score interval), and the two one-sided drift tests (Welch's t-test
for a drop in mean score, Fisher's exact test for a rise in the poor share).

scipy is imported inside the functions that need it, on first use: it is slow to import,
and ``import db`` or ``import db.qa`` never imports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["WindowStats", "fisher_rise_p", "t_interval", "welch_drop_p", "wilson_interval"]


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


@dataclass(frozen=True)
class WindowStats:
    """Scored scans of one group in one window."""

    scans: int
    mean: float
    variance: float  # sample variance (0 for a single scan)
    poor: int

    @property
    def poor_share(self) -> float:
        return self.poor / self.scans if self.scans else 0.0


def welch_drop_p(baseline: WindowStats, recent: WindowStats) -> float:
    """One-sided p-value of Welch's t-test that the recent mean is below the baseline's."""
    from scipy.stats import t

    se2 = baseline.variance / baseline.scans + recent.variance / recent.scans
    drop = baseline.mean - recent.mean
    if se2 <= 0.0:  # no spread at all: any drop is certain, none is impossible
        return 0.0 if drop > 0 else 1.0
    df = (
        se2
        * se2
        / (
            (baseline.variance / baseline.scans) ** 2 / (baseline.scans - 1)
            + (recent.variance / recent.scans) ** 2 / (recent.scans - 1)
        )
    )
    return float(t.sf(drop / math.sqrt(se2), df))


def fisher_rise_p(baseline: WindowStats, recent: WindowStats) -> float:
    """One-sided p-value of Fisher's exact test that poor grades are more likely now."""
    from scipy.stats import fisher_exact

    table = [
        [recent.poor, recent.scans - recent.poor],
        [baseline.poor, baseline.scans - baseline.poor],
    ]
    return float(fisher_exact(table, alternative="greater").pvalue)

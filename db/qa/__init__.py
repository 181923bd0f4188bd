"""QA reporting, computing only (no rendering; that is :mod:`worker.report`):

* ``rows``: the groupings, grades and report period, and the scored scans as arrays;
* ``queries``: the report SQL over the QA views (and the files of the worst scans);
* ``figures``: score figures per group and per day, computed from the rows;
* ``stats``: the intervals and the one-sided drift tests (the only scipy user in ``db``);
* ``drift``: the drift rule, the recent-versus-baseline check per group, its alerts;
* ``report``: :class:`QAReport`, everything one report shows, and :func:`build_report`;
* ``agreement``: the model against the reviewers' ratings, and reviewers against each other;
* ``calibration``: grade thresholds that best match the reviewers, checked on held-out ratings.

Statistics (scipy) are imported on first use, so ``import db`` and ``import db.qa`` never
import scipy.
"""

from db.qa.agreement import AgreementReport, agreement_report, build_agreement
from db.qa.drift import DriftRule, check_drift
from db.qa.queries import scan_files
from db.qa.report import ALL_VERSIONS, QAReport, build_report
from db.qa.rows import DEFAULT_DAYS, DIMENSIONS

__all__ = [
    "ALL_VERSIONS",
    "DEFAULT_DAYS",
    "DIMENSIONS",
    "AgreementReport",
    "DriftRule",
    "QAReport",
    "agreement_report",
    "build_agreement",
    "build_report",
    "check_drift",
    "scan_files",
]

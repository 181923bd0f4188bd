"""QA reporting, computing only (no rendering): the report SQL over the QA views, the
figures, the drift tests and the report object that ``usqa report`` renders.

Statistics (scipy) are imported on first use, so ``import db`` and ``import db.qa`` never
import scipy.
"""

from db.qa.drift import DriftRule, check_drift
from db.qa.queries import DEFAULT_DAYS, DIMENSIONS, scan_files
from db.qa.report import ALL_VERSIONS, QAReport, build_report

__all__ = [
    "ALL_VERSIONS",
    "DEFAULT_DAYS",
    "DIMENSIONS",
    "DriftRule",
    "QAReport",
    "build_report",
    "check_drift",
    "scan_files",
]

"""QA views for reports and dashboards.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

Views (documented column by column in docs/sql.md):

``qa_scan_outcomes``         one row per received scan, whatever its status
``qa_scan_scores``           one row per scored scan, with its current score
``qa_daily_summary``         per day, station, manufacturer and scanner model
``qa_daily_by_operator``     per day and operator (pseudonym)
``qa_daily_by_transducer``   per day and transducer (probe)
``qa_daily_by_body_part``    per day and body part
``qa_model_versions``        per model version

``day`` is the date the scan was acquired by the scanner's clock or, when the file carries
no acquisition time, the UTC date it was received. No index is added: ``day`` is an
expression, and a query that also states its range on ``acquired_at`` / ``received_at``
(as usqa report does, see docs/sql.md) is answered from the existing indexes on
``scans.acquisition_datetime`` and ``scans.received_at``. (An index here would also have to
be declared in db/models.py, which the schema check compares with the database.)

The SQL differs between the two databases only where it must: the ``day`` expression, and
on PostgreSQL scores and shares are NUMERIC so that ``ROUND(x, 1)`` works in dashboards as it
does on SQLite. The view text is frozen here on purpose: a later change is a new migration.
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DAY = {
    "postgresql": "CAST(COALESCE({t}acquisition_datetime, {t}received_at AT TIME ZONE 'UTC') AS date)",
    "sqlite": "date(COALESCE({t}acquisition_datetime, {t}received_at))",
}

# name -> the ``scans`` columns it groups by, besides ``day``
DAILY_VIEWS = {
    "qa_daily_summary": ("station_name", "manufacturer", "model_name"),
    "qa_daily_by_operator": ("operator",),
    "qa_daily_by_transducer": ("transducer",),
    "qa_daily_by_body_part": ("body_part",),
}

VIEWS = (
    "qa_scan_outcomes",
    "qa_scan_scores",
    *DAILY_VIEWS,
    "qa_model_versions",
)


def _dialect() -> str:
    name = op.get_bind().dialect.name
    if name not in DAY:
        raise RuntimeError(f"QA views support PostgreSQL and SQLite, not {name}")
    return name


def _num(expr: str, dialect: str) -> str:
    """A score or share: NUMERIC on PostgreSQL (so ROUND(x, n) works), REAL on SQLite."""
    return f"CAST({expr} AS NUMERIC)" if dialect == "postgresql" else expr


def _share(count: str, total: str, dialect: str) -> str:
    if dialect == "postgresql":
        return f"CAST({count} AS NUMERIC) / NULLIF({total}, 0)"
    return f"1.0 * {count} / NULLIF({total}, 0)"


def _scan_outcomes(dialect: str) -> str:
    return f"""
CREATE VIEW qa_scan_outcomes AS
SELECT
    s.id AS scan_id,
    {DAY[dialect].format(t="s.")} AS day,
    s.received_at,
    s.finished_at,
    s.acquisition_datetime AS acquired_at,
    s.status,
    s.attempts,
    s.kind,
    s.modality,
    s.manufacturer,
    s.model_name,
    s.station_name,
    s.transducer,
    s.operator,
    s.body_part,
    s.institution,
    s.model_version
FROM scans s
"""


def _scan_scores(dialect: str) -> str:
    grade_flags = ",\n    ".join(
        f"CASE WHEN ss.grade = '{g}' THEN 1 ELSE 0 END AS is_{g}"
        for g in ("good", "average", "poor")
    )
    return f"""
CREATE VIEW qa_scan_scores AS
SELECT
    s.id AS scan_id,
    {DAY[dialect].format(t="s.")} AS day,
    s.received_at,
    ss.scored_at,
    s.acquisition_datetime AS acquired_at,
    s.study_datetime AS study_at,
    s.study_instance_uid,
    s.series_instance_uid,
    s.sop_instance_uid,
    s.modality,
    s.manufacturer,
    s.model_name,
    s.station_name,
    s.device_serial_number,
    s.software_versions,
    s.transducer,
    s.operator,
    s.body_part,
    s.institution,
    ss.frames_scored,
    {_num("ss.score", dialect)} AS score,
    {_num("ss.mean_score", dialect)} AS mean_frame_score,
    {_num("ss.min_score", dialect)} AS min_frame_score,
    {_num("ss.p10_score", dialect)} AS p10_frame_score,
    ss.grade,
    {grade_flags},
    ss.aggregate,
    ss.model_version
FROM scans s
JOIN scan_scores ss ON ss.scan_id = s.id AND ss.model_version = s.model_version
WHERE s.status = 'scored'
"""


def _daily(name: str, columns: Sequence[str], dialect: str) -> str:
    """Per day and group: counts per outcome, mean and median score, grade counts and shares.

    The median is the middle score (the mean of the two middle ones for an even count),
    found with ROW_NUMBER: unscored rows get their own partition so that they never take a
    rank, whichever end NULLs sort to."""
    keys = ", ".join(columns)
    group = ", ".join(f"s.{c}" for c in columns)
    grade_counts = ",\n    ".join(
        f"SUM(CASE WHEN grade = '{g}' THEN 1 ELSE 0 END) AS {g}"
        for g in ("good", "average", "poor")
    )
    grade_shares = ",\n    ".join(
        _share(f"SUM(CASE WHEN grade = '{g}' THEN 1 ELSE 0 END)", "COUNT(score)", dialect)
        + f" AS {g}_share"
        for g in ("good", "average", "poor")
    )
    median = (
        "AVG(CASE WHEN score IS NOT NULL "
        "AND score_rank IN ((n_scored + 1) / 2, (n_scored + 2) / 2) THEN score END)"
    )
    return f"""
CREATE VIEW {name} AS
WITH ranked AS (
    SELECT
        {DAY[dialect].format(t="s.")} AS day,
        {group},
        s.status,
        ss.score,
        ss.grade,
        ROW_NUMBER() OVER (
            PARTITION BY {DAY[dialect].format(t="s.")}, {group},
                CASE WHEN ss.score IS NULL THEN 1 ELSE 0 END
            ORDER BY ss.score
        ) AS score_rank,
        COUNT(ss.score) OVER (PARTITION BY {DAY[dialect].format(t="s.")}, {group}) AS n_scored
    FROM scans s
    LEFT JOIN scan_scores ss
        ON ss.scan_id = s.id AND ss.model_version = s.model_version AND s.status = 'scored'
)
SELECT
    day,
    {keys},
    COUNT(*) AS received,
    COUNT(score) AS scans,
    {_num("AVG(score)", dialect)} AS mean_score,
    {_num(median, dialect)} AS median_score,
    {_num("MIN(score)", dialect)} AS min_score,
    {_num("MAX(score)", dialect)} AS max_score,
    {grade_counts},
    {grade_shares},
    SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failed,
    SUM(CASE WHEN status = 'skipped' THEN 1 ELSE 0 END) AS skipped,
    SUM(CASE WHEN status IN ('queued', 'processing') THEN 1 ELSE 0 END) AS pending
FROM ranked
GROUP BY day, {keys}
"""


def _model_versions(dialect: str) -> str:
    return f"""
CREATE VIEW qa_model_versions AS
SELECT
    mv.version AS model_version,
    mv.architecture,
    mv.weights_name,
    mv.first_used_at,
    mv.last_used_at,
    COUNT(ss.id) AS scans,
    {_num("AVG(ss.score)", dialect)} AS mean_score,
    MIN(ss.scored_at) AS first_scored_at,
    MAX(ss.scored_at) AS last_scored_at
FROM model_versions mv
LEFT JOIN scan_scores ss ON ss.model_version = mv.version
GROUP BY mv.version, mv.architecture, mv.weights_name, mv.first_used_at, mv.last_used_at
"""


def upgrade() -> None:
    """Create the QA views."""
    dialect = _dialect()
    op.execute(_scan_outcomes(dialect))
    op.execute(_scan_scores(dialect))
    for name, columns in DAILY_VIEWS.items():
        op.execute(_daily(name, columns, dialect))
    op.execute(_model_versions(dialect))


def downgrade() -> None:
    """Drop the QA views."""
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")

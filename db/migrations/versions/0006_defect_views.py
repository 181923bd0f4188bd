"""Defect views: defects per day by station, by operator and by transducer.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-12

Views (documented column by column in docs/sql.md):

``qa_daily_defects_by_station``     per day, station and defect
``qa_daily_defects_by_operator``    per day, operator (pseudonym) and defect
``qa_daily_defects_by_transducer``  per day, transducer, station and defect (a probe is
                                    named by its type in most files: the same name on two
                                    stations is two probes)

Which scans count, as in 0002's views: ``day`` is the acquisition date by the scanner's
clock, else the UTC date received; only scans whose outcome is ``scored``, with the score
and defects of the model version of that outcome (``scans.model_version``: a rescored scan
counts once, with its current result). A scan counts for a defect only when its model
judges that defect (the defect is in ``model_versions.defect_names``): scans of a model
without a defect head are not judged and are in no row, skipped and failed scans are in no
row either.

One row per day, group and defect its scans' models judge, so a defect that no scan listed
that day has a row with ``listed`` 0 (a dashboard line drops to zero instead of leaving a
gap). ``judged`` (the scans that could have listed the defect) is the denominator of
``listed_share`` and ``first_share``; ``poor_judged`` that of ``poor_listed_share``.

How: the denominators come from one pass over the scans, grouped per model version and
joined to the (few) defect names each version judges; the listed defects from one pass over
``scan_defects`` (only rows of defects actually listed); the two are added up with
UNION ALL and GROUP BY, which treats a NULL group (no station recorded) as one group on
both databases without a NULL-safe join. The SQL differs between the databases only in the
``day`` expression, the NUMERIC shares on PostgreSQL, and how the JSON list of defect names
is read (``json_each`` on SQLite, ``json_array_elements_text`` on PostgreSQL). As in 0002
the view text is frozen here; a later change is a new migration.
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DAY = {
    "postgresql": (
        "CAST(COALESCE({t}acquisition_datetime, {t}received_at AT TIME ZONE 'UTC') AS date)"
    ),
    "sqlite": "date(COALESCE({t}acquisition_datetime, {t}received_at))",
}

# each model version with one row per defect name it judges (none for defect_names NULL)
JUDGES = {
    "postgresql": (
        "SELECT DISTINCT mv.version AS model_version, j.defect\n"
        "    FROM model_versions mv\n"
        "    CROSS JOIN LATERAL json_array_elements_text(CAST(mv.defect_names AS json))"
        " AS j(defect)\n"
        "    WHERE mv.defect_names IS NOT NULL"
    ),
    "sqlite": (
        "SELECT DISTINCT mv.version AS model_version, j.value AS defect\n"
        "    FROM model_versions mv, json_each(mv.defect_names) AS j\n"
        "    WHERE mv.defect_names IS NOT NULL"
    ),
}

# name -> the ``scans`` columns it groups by, besides ``day`` and ``defect``
DEFECT_VIEWS = {
    "qa_daily_defects_by_station": ("station_name",),
    "qa_daily_defects_by_operator": ("operator",),
    "qa_daily_defects_by_transducer": ("transducer", "station_name"),
}


def _dialect() -> str:
    name = op.get_bind().dialect.name
    if name not in DAY:
        raise RuntimeError(f"QA views support PostgreSQL and SQLite, not {name}")
    return name


def _share(count: str, total: str, dialect: str) -> str:
    if dialect == "postgresql":
        return f"CAST({count} AS NUMERIC) / NULLIF({total}, 0)"
    return f"1.0 * {count} / NULLIF({total}, 0)"


def _defects_daily(name: str, columns: Sequence[str], dialect: str) -> str:
    """Per day, group and judged defect: scans judged, listing it, listing it first, and
    the same among the poor ones, with their shares."""
    keys = ", ".join(columns)
    scan_keys = ", ".join(f"s.{c}" for c in columns)

    def of(alias: str) -> str:
        return ", ".join(f"{alias}.{c}" for c in columns)

    return f"""
CREATE VIEW {name} AS
WITH judged_scans AS (
    SELECT
        s.id AS scan_id,
        s.model_version,
        {DAY[dialect].format(t="s.")} AS day,
        {scan_keys},
        CASE WHEN ss.grade = 'poor' THEN 1 ELSE 0 END AS is_poor
    FROM scans s
    JOIN scan_scores ss ON ss.scan_id = s.id AND ss.model_version = s.model_version
    JOIN model_versions mv ON mv.version = s.model_version
    WHERE s.status = 'scored' AND mv.defect_names IS NOT NULL
),
judges AS (
    {JUDGES[dialect]}
),
per_version AS (
    SELECT day, {keys}, model_version, COUNT(*) AS judged, SUM(is_poor) AS poor_judged
    FROM judged_scans
    GROUP BY day, {keys}, model_version
),
counted AS (
    SELECT p.day, {of("p")}, j.defect, p.judged, p.poor_judged,
        0 AS listed, 0 AS ranked_first, 0 AS poor_listed
    FROM per_version p
    JOIN judges j ON j.model_version = p.model_version
    UNION ALL
    SELECT js.day, {of("js")}, sd.defect, 0, 0,
        1, CASE WHEN sd.rank = 1 THEN 1 ELSE 0 END, js.is_poor
    FROM judged_scans js
    JOIN scan_defects sd ON sd.scan_id = js.scan_id AND sd.model_version = js.model_version
)
SELECT
    day,
    {keys},
    defect,
    SUM(judged) AS judged,
    SUM(listed) AS listed,
    {_share("SUM(listed)", "SUM(judged)", dialect)} AS listed_share,
    SUM(ranked_first) AS ranked_first,
    {_share("SUM(ranked_first)", "SUM(judged)", dialect)} AS first_share,
    SUM(poor_judged) AS poor_judged,
    SUM(poor_listed) AS poor_listed,
    {_share("SUM(poor_listed)", "SUM(poor_judged)", dialect)} AS poor_listed_share
FROM counted
GROUP BY day, {keys}, defect
"""


def upgrade() -> None:
    """Create the defect views."""
    dialect = _dialect()
    for name, columns in DEFECT_VIEWS.items():
        op.execute(_defects_daily(name, columns, dialect))


def downgrade() -> None:
    """Drop the defect views."""
    for name in reversed(DEFECT_VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")

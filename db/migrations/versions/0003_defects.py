"""Defects: what the model says is wrong with a scan.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

- ``model_versions.defect_names``: JSON list of the defect names the model judges; NULL when
  the model has no defect head (its scans' "no defects" then means "not judged", not clean).
- ``scan_scores.first_defect`` and ``frame_scores.first_defect``: the most probable listed
  defect of the scan / of the frame; NULL when clean or not judged.
- ``scan_defects``: one row per listed defect of a scored scan and model version, ranked
  (1 = first), with its mean probability and the share of frames that show it. The index on
  (defect, model_version, scan_id) serves the per-defect report queries ("scans showing
  dead_elements", joined to ``scans`` by primary key for the period and the transducer).
- ``qa_scan_scores`` gains ``first_defect`` as its last column (documented in docs/sql.md);
  every other column is unchanged. On PostgreSQL the view is replaced in place (CREATE OR
  REPLACE keeps its grants and any view built on it); SQLite has no CREATE OR REPLACE, so the
  view is dropped and created. Downgrade restores 0002's definition.

No CHECK constraint lists defect names: model/defects.py owns the vocabulary and the
ledger's writers refuse names outside it. As in 0002, the view text is frozen here (its SQL
differs between the databases only in the ``day`` expression and the NUMERIC casts).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DAY = {
    "postgresql": "CAST(COALESCE({t}acquisition_datetime, {t}received_at AT TIME ZONE 'UTC') AS date)",
    "sqlite": "date(COALESCE({t}acquisition_datetime, {t}received_at))",
}
DEFECT_INDEX = "ix_scan_defects_defect_model_version_scan_id"


def _dialect() -> str:
    name = op.get_bind().dialect.name
    if name not in DAY:
        raise RuntimeError(f"QA views support PostgreSQL and SQLite, not {name}")
    return name


def _num(expr: str, dialect: str) -> str:
    """A score or share: NUMERIC on PostgreSQL (so ROUND(x, n) works), REAL on SQLite."""
    return f"CAST({expr} AS NUMERIC)" if dialect == "postgresql" else expr


def _scan_scores(dialect: str, *, first_defect: bool, replace: bool = False) -> str:
    """``qa_scan_scores``: 0002's definition, plus ``first_defect`` last when asked."""
    grade_flags = ",\n    ".join(
        f"CASE WHEN ss.grade = '{g}' THEN 1 ELSE 0 END AS is_{g}"
        for g in ("good", "average", "poor")
    )
    extra = ",\n    ss.first_defect" if first_defect else ""
    create = "CREATE OR REPLACE VIEW" if replace else "CREATE VIEW"
    return f"""
{create} qa_scan_scores AS
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
    ss.model_version{extra}
FROM scans s
JOIN scan_scores ss ON ss.scan_id = s.id AND ss.model_version = s.model_version
WHERE s.status = 'scored'
"""


def upgrade() -> None:
    """Add the defect columns and table, and ``qa_scan_scores.first_defect``."""
    dialect = _dialect()
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("defect_names", sa.Text(), nullable=True))
    with op.batch_alter_table("scan_scores", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_defect", sa.String(length=32), nullable=True))
    with op.batch_alter_table("frame_scores", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_defect", sa.String(length=32), nullable=True))
    op.create_table(
        "scan_defects",
        sa.Column("scan_id", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("defect", sa.String(length=32), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("frame_share", sa.Float(), nullable=False),
        sa.CheckConstraint("rank >= 1", name=op.f("ck_scan_defects_rank")),
        sa.CheckConstraint(
            "probability >= 0 AND probability <= 1", name=op.f("ck_scan_defects_probability")
        ),
        sa.CheckConstraint(
            "frame_share >= 0 AND frame_share <= 1", name=op.f("ck_scan_defects_frame_share")
        ),
        sa.ForeignKeyConstraint(
            ["model_version"],
            ["model_versions.version"],
            name=op.f("fk_scan_defects_model_version_model_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["scan_id"], ["scans.id"], name=op.f("fk_scan_defects_scan_id_scans"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint(
            "scan_id", "model_version", "defect", name=op.f("pk_scan_defects")
        ),
    )
    with op.batch_alter_table("scan_defects", schema=None) as batch_op:
        batch_op.create_index(DEFECT_INDEX, ["defect", "model_version", "scan_id"], unique=False)
    if dialect == "postgresql":
        op.execute(_scan_scores(dialect, first_defect=True, replace=True))
    else:
        op.execute("DROP VIEW IF EXISTS qa_scan_scores")
        op.execute(_scan_scores(dialect, first_defect=True))


def downgrade() -> None:
    """Drop them again and restore 0002's ``qa_scan_scores``.

    The view goes first: it reads ``scan_scores.first_defect``. The columns are dropped with
    ALTER TABLE ... DROP COLUMN (SQLite 3.35 or later), not by batch mode's copy of the
    table, which SQLite refuses while the other QA views name that table."""
    dialect = _dialect()
    op.execute("DROP VIEW IF EXISTS qa_scan_scores")
    with op.batch_alter_table("scan_defects", schema=None) as batch_op:
        batch_op.drop_index(DEFECT_INDEX)
    op.drop_table("scan_defects")
    op.drop_column("frame_scores", "first_defect")
    op.drop_column("scan_scores", "first_defect")
    op.drop_column("model_versions", "defect_names")
    op.execute(_scan_scores(dialect, first_defect=False))

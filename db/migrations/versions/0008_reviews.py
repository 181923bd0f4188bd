"""The review page: accounts, browser sessions, reviewers' ratings and the audit trail.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03

- ``users``: one account per login name, with a role (``viewer``, ``reviewer`` or ``admin``),
  an argon2id password hash (NULL: single sign-on through the trusted proxy only) and when it
  was created, last signed in, changed its password or was disabled.
- ``web_sessions``: signed-in sessions by the sha256 of their cookie token, with the CSRF
  token of their forms and their expiry; they go with their account (ON DELETE CASCADE).
- ``reviews``: a reviewer's grade for a scan (``agrees``: the model's grade accepted), with
  the model version, score and grade they were shown and an optional comment; unique per scan
  and reviewer. Rows go with their scan (ON DELETE CASCADE).
- ``review_defects``: the defects the reviewer sees, one row each (ON DELETE CASCADE).
- ``audit_log``: sign-ins, failed sign-ins, views of scans and images, ratings and account
  changes, with the account name, the client address and the time. ``scan_id`` has no foreign
  key, so the trail outlives the scan.

The downgrade drops the five tables (and so every rating and the audit trail).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("password_changed_at", TZ, nullable=True),
        sa.Column("last_login_at", TZ, nullable=True),
        sa.Column("disabled_at", TZ, nullable=True),
        sa.CheckConstraint("role IN ('viewer', 'reviewer', 'admin')", name=op.f("ck_users_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )
    op.create_table(
        "web_sessions",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("last_seen_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_web_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_web_sessions")),
    )
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.create_index(op.f("ix_web_sessions_user_id"), ["user_id"], unique=False)
        batch_op.create_index(op.f("ix_web_sessions_expires_at"), ["expires_at"], unique=False)
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("scan_id", sa.Integer(), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=True),
        sa.Column("model_score", sa.Float(), nullable=True),
        sa.Column("model_grade", sa.String(length=16), nullable=True),
        sa.Column("agrees", sa.Boolean(), nullable=False),
        sa.Column("grade", sa.String(length=16), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("rated_at", TZ, nullable=False),
        sa.CheckConstraint(
            "grade IN ('good', 'average', 'poor')", name=op.f("ck_reviews_grade")
        ),
        sa.CheckConstraint(
            "model_grade IS NULL OR model_grade IN ('good', 'average', 'poor')",
            name=op.f("ck_reviews_model_grade"),
        ),
        sa.ForeignKeyConstraint(
            ["model_version"],
            ["model_versions.version"],
            name=op.f("fk_reviews_model_version_model_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["reviewer_id"], ["users.id"], name=op.f("fk_reviews_reviewer_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["scan_id"], ["scans.id"], name=op.f("fk_reviews_scan_id_scans"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
        sa.UniqueConstraint("scan_id", "reviewer_id", name=op.f("uq_reviews_scan_id_reviewer_id")),
    )
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.create_index(op.f("ix_reviews_scan_id"), ["scan_id"], unique=False)
        batch_op.create_index(
            "ix_reviews_reviewer_id_rated_at", ["reviewer_id", "rated_at"], unique=False
        )
    op.create_table(
        "review_defects",
        sa.Column("review_id", sa.Integer(), nullable=False),
        sa.Column("defect", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["review_id"],
            ["reviews.id"],
            name=op.f("fk_review_defects_review_id_reviews"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("review_id", "defect", name=op.f("pk_review_defects")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", TZ, nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("scan_id", sa.Integer(), nullable=True),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(op.f("ix_audit_log_at"), ["at"], unique=False)
        batch_op.create_index("ix_audit_log_action_at", ["action", "at"], unique=False)
        batch_op.create_index("ix_audit_log_user_name_at", ["user_name", "at"], unique=False)


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("review_defects")
    op.drop_table("reviews")
    op.drop_table("web_sessions")
    op.drop_table("users")

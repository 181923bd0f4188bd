"""The results outbox: the structured reports (SRs) to deliver, one row each.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-14

- ``result_outbox``: one row per scored DICOM scan, model version and destination
  (``AE@host:port`` for a C-STORE to a PACS, ``dir:FOLDER`` for the results folder), queued
  in the transaction that writes the score. ``state`` is ``pending`` until the SR is
  delivered (``sent``) or found undeliverable (``failed``, with ``last_error``); a PACS that
  is down pushes ``next_attempt_at`` back (exponential backoff) and counts ``attempts``.
  ``claim_token`` and ``claimed_until`` let one delivering process take a row at a time.
  ``sr_sop_class_uid`` and ``sr_sop_instance_uid`` record what was sent. Unique per scan,
  version and destination, so a scan is never queued twice for one destination. Rows go with
  their scan (ON DELETE CASCADE). The downgrade drops the table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "result_outbox"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("scan_id", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("destination", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("claim_token", sa.String(length=64), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sr_sop_class_uid", sa.String(length=64), nullable=True),
        sa.Column("sr_sop_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'sent', 'failed')", name=op.f("ck_result_outbox_state")
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_result_outbox_attempts")),
        sa.ForeignKeyConstraint(
            ["model_version"],
            ["model_versions.version"],
            name=op.f("fk_result_outbox_model_version_model_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["scan_id"],
            ["scans.id"],
            name=op.f("fk_result_outbox_scan_id_scans"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_result_outbox")),
        sa.UniqueConstraint(
            "scan_id",
            "model_version",
            "destination",
            name=op.f("uq_result_outbox_scan_id_model_version_destination"),
        ),
    )
    with op.batch_alter_table(TABLE, schema=None) as batch_op:
        batch_op.create_index(
            "ix_result_outbox_state_next_attempt_at", ["state", "next_attempt_at"], unique=False
        )
        batch_op.create_index(op.f("ix_result_outbox_scan_id"), ["scan_id"], unique=False)


def downgrade() -> None:
    op.drop_table(TABLE)

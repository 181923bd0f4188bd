"""Site settings: the fingerprint of the pseudonym salt.

Revision ID: 0005
Revises: 0004 when present, else 0003
Create Date: 2026-12-10

- ``site_settings``: one row per named fact about the site. ``pseudonym_salt_fingerprint``
  holds a keyed fingerprint of USQA_PSEUDONYM_SALT (HMAC-SHA256 of a fixed text, first 16
  hex digits: never the salt), the process that recorded it and when, so that a scoring
  process started with another salt (or none) warns instead of silently splitting operator
  pseudonyms and patient id hashes in two (db/site.py).

Numbered 0005 because another migration numbered 0004 was being written at the same time
(issue 15); this one follows it when it is there, so the history stays one line either way.
Once both are in, ``down_revision`` may simply say "0004".
"""

from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = (
    "0004" if any(Path(__file__).resolve().parent.glob("0004_*.py")) else "0003"
)
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "site_settings",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("recorded_by", sa.String(length=255), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_site_settings")),
    )


def downgrade() -> None:
    op.drop_table("site_settings")

"""File identity: names that are not valid UTF-8, and which file a scan was.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

- ``scans.path_bytes``: the original bytes of a file name that is not valid UTF-8 or holds
  non-printable characters; ``scans.path`` then holds its escaped text form (db/paths.py).
  NULL for every ordinary name.
- ``scans.disposed_path_bytes``: the same for ``disposed_path`` (the file moved to
  ``done/`` or ``failed/``).
- ``scans.file_device`` and ``scans.file_inode``: the device and inode number of the file
  that was received (as signed 64-bit values), so that moving or deleting after scoring acts
  only on that same file. NULL for rows recorded before this revision (those are matched by
  size and modification time alone).

Only nullable columns are added, so existing ledgers upgrade in place; no view reads them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("path_bytes", sa.LargeBinary()),
    ("disposed_path_bytes", sa.LargeBinary()),
    ("file_device", sa.BigInteger()),
    ("file_inode", sa.BigInteger()),
)


def upgrade() -> None:
    """Add the four nullable columns to ``scans``."""
    with op.batch_alter_table("scans", schema=None) as batch_op:
        for name, kind in COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    """Drop them (ALTER TABLE ... DROP COLUMN: SQLite 3.35 or later; the QA views name
    ``scans``, so batch mode's copy of the table is not used)."""
    for name, _ in reversed(COLUMNS):
        op.drop_column("scans", name)

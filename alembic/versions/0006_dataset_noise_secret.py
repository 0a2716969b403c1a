"""each dataset's noise secret (consistent noise, the cell key method)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing datasets get their secret on first use (it is wrapped by a service key, which
    # migrations do not hold).
    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.add_column(sa.Column("noise_key_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("wrapped_noise_secret", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    # In place on SQLite too (3.35+): batch mode would recreate the table, and dropping the old
    # one fails while agreements refer to it.
    op.drop_column("dataset", "wrapped_noise_secret")
    op.drop_column("dataset", "noise_key_id")

"""microdata agreements: the agreement's kind and its wrapped pseudonym key

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("agreement", schema=None) as batch_op:
        # Every agreement made before this revision releases aggregates.
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="aggregate")
        )
        batch_op.add_column(sa.Column("pseudonym_key_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("pseudonym_key", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    # In place on SQLite too (3.35+): batch mode would recreate the table, and dropping the old
    # one fails (or, with ON DELETE CASCADE, empties its children) while versions refer to it.
    for column in ("pseudonym_key", "pseudonym_key_id", "kind"):
        op.drop_column("agreement", column)

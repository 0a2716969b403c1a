"""partners' name keys: names unique as people read them

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from policies.text import name_key

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PARTNER = sa.table(
    "partner",
    sa.column("id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("name_key", sa.String()),
    sa.column("created_at", sa.DateTime()),
)


def upgrade() -> None:
    # Added with a default, so that SQLite adds it in place: recreating the table would
    # cascade-delete the partners' clients.
    with op.batch_alter_table("partner", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("name_key", sa.String(length=64), nullable=False, server_default="")
        )
    connection = op.get_bind()
    taken: set[str] = set()
    rows = connection.execute(
        sa.select(_PARTNER.c.id, _PARTNER.c.name).order_by(_PARTNER.c.created_at, _PARTNER.c.id)
    )
    for partner_id, name in list(rows):
        key = name_key(name)
        # Partners named alike before this revision keep their names: the later ones get a key
        # of their own (their ID's), and new names are checked against the first one's.
        if key in taken:
            key = name_key(f"{name}\x00{partner_id}")
        taken.add(key)
        connection.execute(
            sa.update(_PARTNER).where(_PARTNER.c.id == partner_id).values(name_key=key)
        )
    op.create_index(op.f("ix_partner_name_key"), "partner", ["name_key"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_partner_name_key"), table_name="partner")
    # In place on SQLite too (3.35+): batch mode would recreate the table, cascading.
    op.drop_column("partner", "name_key")

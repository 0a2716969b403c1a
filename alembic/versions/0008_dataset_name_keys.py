"""datasets' name keys: names unique as people read them, as partners' are

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from alembic.util import CommandError

from policies.text import name_key

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DATASET = sa.table(
    "dataset",
    sa.column("id", sa.Uuid()),
    sa.column("name", sa.String()),
    sa.column("name_key", sa.String()),
    sa.column("created_at", sa.DateTime()),
)


def _keys(connection: sa.Connection) -> dict[uuid.UUID, str]:
    """Every dataset's (deleted ones too) name key; refused if two names read the same."""
    rows = connection.execute(
        sa.select(_DATASET.c.id, _DATASET.c.name).order_by(_DATASET.c.created_at, _DATASET.c.id)
    )
    first: dict[str, tuple[uuid.UUID, str]] = {}
    keys, clashes = {}, []
    for dataset_id, name in list(rows):
        keys[dataset_id] = key = name_key(name)
        if key in first:
            clashes.append(f"{name!r} ({dataset_id}) reads as {first[key][1]!r} ({first[key][0]})")
        first.setdefault(key, (dataset_id, name))
    if clashes:
        raise CommandError(
            "dataset names must differ by more than case, spacing and Unicode normalisation: "
            + "; ".join(clashes)
            + ". Rename all but one of each (the name column of the dataset table), then run "
            "`partage db upgrade` again"
        )
    return keys


def upgrade() -> None:
    connection = op.get_bind()
    # Checked before anything changes: SQLite commits an ALTER TABLE at once.
    keys = _keys(connection)
    # With a default, so that SQLite adds it in place (recreating the table fails while
    # agreements refer to it).
    op.add_column(
        "dataset", sa.Column("name_key", sa.String(length=64), nullable=False, server_default="")
    )
    for dataset_id, key in keys.items():
        connection.execute(
            sa.update(_DATASET).where(_DATASET.c.id == dataset_id).values(name_key=key)
        )
    op.create_index(op.f("ix_dataset_name_key"), "dataset", ["name_key"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_dataset_name_key"), table_name="dataset")
    # In place on SQLite too (3.35+), as 0007's.
    op.drop_column("dataset", "name_key")

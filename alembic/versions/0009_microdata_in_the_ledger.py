"""microdata in the ledger: each released pseudonym's class, per partner and pseudonym key

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import service.db

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "microdata_ledger_entry",
        sa.Column("partner_id", sa.Uuid(), nullable=False),
        sa.Column("extract_id", sa.Uuid(), nullable=False),
        sa.Column("dataset", sa.String(length=80), nullable=False),
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("k", sa.Integer(), nullable=False),
        sa.Column("classes", sa.Text(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", service.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["extract_id"],
            ["extract.id"],
            name=op.f("fk_microdata_ledger_entry_extract_id_extract"),
        ),
        sa.ForeignKeyConstraint(
            ["partner_id"],
            ["partner.id"],
            name=op.f("fk_microdata_ledger_entry_partner_id_partner"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_microdata_ledger_entry")),
        sa.UniqueConstraint("extract_id", name=op.f("uq_microdata_ledger_entry_extract_id")),
    )
    with op.batch_alter_table("microdata_ledger_entry", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_microdata_ledger_entry_dataset"), ["dataset"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_microdata_ledger_entry_partner_id"), ["partner_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_microdata_ledger_entry_scope"), ["scope"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("microdata_ledger_entry", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_microdata_ledger_entry_scope"))
        batch_op.drop_index(batch_op.f("ix_microdata_ledger_entry_partner_id"))
        batch_op.drop_index(batch_op.f("ix_microdata_ledger_entry_dataset"))

    op.drop_table("microdata_ledger_entry")

"""Ownership history (issue 13): who owned each wearer's case from when, so
the reviews report can say, for every past month, how many wearers on
monitoring had no owner at its end (the inspectorate's bar: at most 1% in
any month). Existing owners start their history at their ``owner_since_ms``;
before that nothing was recorded, and the report counts such a wearer as
without an owner.

Revision ID: 0015
Revises: 0014
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "owner_history",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("subject_id", sa.String(200), nullable=False, index=True),
        sa.Column("owner_id", sa.Integer, nullable=True),
        sa.Column("from_ms", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO owner_history (subject_id, owner_id, from_ms) "
               "SELECT subject_id, owner_id, owner_since_ms FROM wearers WHERE owner_since_ms IS NOT NULL")


def downgrade() -> None:
    op.drop_table("owner_history")

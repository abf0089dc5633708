"""The retention ledger (issue 15): for each wearer whose monitoring has
ended and whose erasure has begun, when monitoring ended and which classes
are erased, so the later classes (the audit link, a year after the rest)
still know when they fall due once the assignments themselves are gone.
The row goes with the last class.

Revision ID: 0017
Revises: 0016
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retention_ledger",
        sa.Column("subject_id", sa.String(200), primary_key=True),
        sa.Column("ended_ms", sa.BigInteger, nullable=False),
        sa.Column("erased_json", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("retention_ledger")

"""Wearers' owners and reviews (issue 13): each wearer on monitoring has an
owning caseworker and a review due every N days from the start of
monitoring or the last review; a review keeps the compliance summary it was
decided on and its outcome.

Revision ID: 0011
Revises: 0010
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wearers",
        sa.Column("subject_id", sa.String(200), primary_key=True),
        sa.Column("owner_id", sa.Integer, nullable=True),
        sa.Column("owner_since_ms", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("subject_id", sa.String(200), nullable=False, index=True),
        sa.Column("period_start_ms", sa.BigInteger, nullable=False),
        sa.Column("period_end_ms", sa.BigInteger, nullable=False),
        sa.Column("summary_json", sa.Text, nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("decided_by", sa.Integer, nullable=False),
        sa.Column("decided_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("reviews")
    op.drop_table("wearers")

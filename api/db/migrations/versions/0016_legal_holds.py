"""Legal holds (issue 15): a hold on a wearer's data of some classes over a
period suspends its erasure until lifted; each has an owner and a review
date.

Revision ID: 0016
Revises: 0015
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("subject_id", sa.String(200), nullable=False, index=True),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger, nullable=False),
        sa.Column("classes_json", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("owner_id", sa.Integer, nullable=False),
        sa.Column("review_ms", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.Integer, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("lifted_by", sa.Integer, nullable=True),
        sa.Column("lifted_ms", sa.BigInteger, nullable=True),
        sa.Column("lift_reason", sa.Text, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("legal_holds")

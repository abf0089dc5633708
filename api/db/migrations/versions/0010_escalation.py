"""Escalation decisions (issue 13): for a wearer, the step the ladder
proposed, the step taken (confirmed, or overridden with a reason), the
ladder version it was made under, the breaches counted, and the letter
generated for it with its SHA-256.

Revision ID: 0010
Revises: 0009
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "escalation_decisions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("subject_id", sa.String(200), nullable=False, index=True),
        sa.Column("proposed_step", sa.String(40), nullable=True),
        sa.Column("step", sa.String(40), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("ladder_version", sa.String(64), nullable=False),
        sa.Column("breach_ids_json", sa.Text, nullable=False),
        sa.Column("decided_by", sa.Integer, nullable=False),
        sa.Column("decided_ms", sa.BigInteger, nullable=False),
        sa.Column("letter", sa.Text, nullable=True),
        sa.Column("letter_sha256", sa.String(64), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("escalation_decisions")

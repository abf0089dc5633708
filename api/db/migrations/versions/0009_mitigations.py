"""Wearers' mitigations (issue 13): a representation about one or more
breaches (received when, by which channel, its text, its attachments'
hashes), the decision that must follow it (accepted: the breaches are
excused; rejected), and which breaches each names.

Revision ID: 0009
Revises: 0008
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mitigations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("subject_id", sa.String(200), nullable=False, index=True),
        sa.Column("received_ms", sa.BigInteger, nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("attachments_json", sa.Text, nullable=False),
        sa.Column("recorded_by", sa.Integer, nullable=False),
        sa.Column("recorded_ms", sa.BigInteger, nullable=False),
        sa.Column("due_ms", sa.BigInteger, nullable=False, index=True),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("decided_by", sa.Integer, nullable=True),
        sa.Column("decided_ms", sa.BigInteger, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
    )
    op.create_table(
        "mitigation_breaches",
        sa.Column("mitigation_id", sa.Integer, sa.ForeignKey("mitigations.id"), primary_key=True),
        sa.Column("breach_id", sa.String(16), primary_key=True, index=True),
    )


def downgrade() -> None:
    op.drop_table("mitigation_breaches")
    op.drop_table("mitigations")

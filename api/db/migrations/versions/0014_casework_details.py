"""Casework details (issue 13): the wearer's recorded language (letters use
it when a template exists), staff email addresses (a wearer's owner is told
of urgent records), and welfare notes staff record about a wearer (a review
is pre-filled with those of its period).

Revision ID: 0014
Revises: 0013
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("email", sa.String(320), nullable=True))
    with op.batch_alter_table("wearers") as batch:
        batch.add_column(sa.Column("language", sa.String(35), nullable=True))
    op.create_table(
        "welfare_notes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("subject_id", sa.String(200), nullable=False, index=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("recorded_by", sa.Integer, nullable=False),
        sa.Column("recorded_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("welfare_notes")
    with op.batch_alter_table("wearers") as batch:
        batch.drop_column("language")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("email")

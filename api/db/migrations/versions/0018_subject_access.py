"""Subject access (issue 15): a request of kind ``sar`` records the
exemptions its approver applied (each part withheld, with its reason) and
any extension of its one-month deadline.

Revision ID: 0018
Revises: 0017
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("access_requests") as batch:
        batch.add_column(sa.Column("exemptions_json", sa.Text, nullable=True))
        batch.add_column(sa.Column("extended_ms", sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("extension_reason", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("access_requests") as batch:
        batch.drop_column("extension_reason")
        batch.drop_column("extended_ms")
        batch.drop_column("exemptions_json")

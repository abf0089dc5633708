"""Device health (issue 13): the device register, fault records (one device,
or a whole batch recalled, over a period), and a caseworker's decision on a
breach that fell inside a fault.

Revision ID: 0012
Revises: 0011
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("device_id", sa.String(200), primary_key=True),
        sa.Column("serial", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("batch", sa.String(200), nullable=False, index=True),
        sa.Column("issued_ms", sa.BigInteger, nullable=True),
        sa.Column("returned_ms", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "device_faults",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("device_id", sa.String(200), nullable=True, index=True),
        sa.Column("batch", sa.String(200), nullable=True, index=True),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger, nullable=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("recorded_by", sa.Integer, nullable=False),
        sa.Column("recorded_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "equipment_fault_decisions",
        sa.Column("breach_id", sa.String(16), primary_key=True),
        sa.Column("fault_id", sa.Integer, nullable=False),
        sa.Column("decision", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("decided_by", sa.Integer, nullable=False),
        sa.Column("decided_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("equipment_fault_decisions")
    op.drop_table("device_faults")
    op.drop_table("devices")

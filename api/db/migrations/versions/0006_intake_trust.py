"""Intake you can trace: each quarantined row keeps its batch's receipt time
(a `future_timestamp` row is judged against it), each batch keeps the
summary its audit entry commits to (devices, wearers, period), and a breach
that new data withdrew names the batch that did it. Changes people make to
a record on the work list (status, assignee, note) get their own table:
free text stays out of the append-only audit log, which keeps its hash.

Revision ID: 0006
Revises: 0005
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("intake_quarantine") as b:
        b.add_column(sa.Column("received_ms", sa.BigInteger, nullable=True))
    op.execute("UPDATE intake_quarantine SET received_ms = (SELECT received_ms FROM intake_batches "
               "WHERE intake_batches.id = intake_quarantine.batch_id)")
    with op.batch_alter_table("intake_batches") as b:
        b.add_column(sa.Column("summary", sa.LargeBinary, nullable=True))
    with op.batch_alter_table("breaches") as b:
        b.add_column(sa.Column("withdrawn_batch", sa.Integer, nullable=True))
    op.create_table(
        "breach_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("breach_id", sa.String(16), nullable=False, index=True),
        sa.Column("ts_ms", sa.BigInteger, nullable=False),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("from_status", sa.String(20), nullable=False),
        sa.Column("to_status", sa.String(20), nullable=False),
        sa.Column("assignee", sa.String(200), nullable=True),
        sa.Column("note", sa.Text, nullable=True),
    )


def downgrade() -> None:  # pragma: no cover - tagtrail migrates forward only
    raise NotImplementedError("tagtrail migrates forward only")

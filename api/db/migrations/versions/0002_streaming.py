"""Continuous operation (issue 5): the breach queue's status on each record,
the intake log of accepted and quarantined rows, and the detector's state.

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("breaches") as b:
        b.add_column(sa.Column("status", sa.String(20), nullable=False, server_default="new"))
        b.add_column(sa.Column("assignee", sa.String(200)))
        b.add_column(sa.Column("status_ms", sa.BigInteger))
        b.add_column(sa.Column("withdrawn_reason", sa.Text))
    op.create_index("ix_breaches_queue", "breaches", ["status", "priority", "first_seen_ms"])
    op.create_table(
        "intake_batches",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("received_ms", sa.BigInteger, nullable=False),
        sa.Column("source", sa.String(300), nullable=False),
        sa.Column("user_id", sa.Integer),
        sa.Column("fix_rows", sa.Integer, nullable=False),
        sa.Column("event_rows", sa.Integer, nullable=False),
        sa.Column("fixes_accepted", sa.Integer, nullable=False),
        sa.Column("events_accepted", sa.Integer, nullable=False),
        sa.Column("quarantined_json", sa.Text, nullable=False),
    )
    op.create_table(
        "intake_fixes",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.Integer, nullable=False),
        sa.Column("row", sa.Integer, nullable=False),
        sa.Column("device_id", sa.String(200), nullable=False),
        sa.Column("ts_ms", sa.BigInteger, nullable=False),
        sa.Column("lat", sa.Float, nullable=False),
        sa.Column("lon", sa.Float, nullable=False),
        sa.Column("x", sa.Float, nullable=False),
        sa.Column("y", sa.Float, nullable=False),
        sa.Column("accuracy_m", sa.Float),
        sa.Column("battery_pct", sa.Float),
        sqlite_autoincrement=True,  # seqs are never reused, even after compaction empties the log
    )
    op.create_index("ux_intake_fixes_key", "intake_fixes", ["device_id", "ts_ms"], unique=True)
    op.create_table(
        "intake_events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.Integer, nullable=False),
        sa.Column("row", sa.Integer, nullable=False),
        sa.Column("device_id", sa.String(200), nullable=False),
        sa.Column("ts_ms", sa.BigInteger, nullable=False),
        sa.Column("event", sa.String(40), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ux_intake_events_key", "intake_events", ["device_id", "ts_ms", "event"], unique=True)
    op.create_table(
        "intake_quarantine",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("batch_id", sa.Integer, nullable=False, index=True),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("row", sa.Integer, nullable=False),
        sa.Column("reason", sa.String(30), nullable=False),
        sa.Column("device_id", sa.Text),
        sa.Column("ts", sa.Text),
    )
    op.create_table(
        "detector_state",
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for name in ("detector_state", "intake_quarantine", "intake_events", "intake_fixes", "intake_batches"):
        op.drop_table(name)
    op.drop_index("ix_breaches_queue", "breaches")
    with op.batch_alter_table("breaches") as b:
        for c in ("withdrawn_reason", "status_ms", "assignee", "status"):
            b.drop_column(c)

"""Conditions apply from when they are imposed: assignments become segments
(each with the versions of its zones), every zone version is kept with its
SHA-256, and changes to the past go through corrections that a second admin
approves. Existing rows: every zone becomes version 1 (effective wherever
the loaded assignments said: it came from a file), every assignment one
segment of itself.

Revision ID: 0007
Revises: 0006
"""
from __future__ import annotations

import hashlib
import json

import rfc8785
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("assignments") as b:
        b.add_column(sa.Column("chain_start_ms", sa.BigInteger, nullable=True))
        b.add_column(sa.Column("zone_versions_json", sa.Text, nullable=False, server_default="{}"))
    with op.batch_alter_table("zones") as b:
        b.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="1"))
    op.create_table(
        "zone_versions",
        sa.Column("zone_id", sa.String(200), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("feature_json", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("effective_from_ms", sa.BigInteger, nullable=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.Integer, nullable=True),
        sa.Column("correction_id", sa.Integer, nullable=True),
    )
    op.create_table(
        "corrections",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("payload_json", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("proposed_by", sa.Integer, nullable=False),
        sa.Column("proposed_ms", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(20), nullable=False, server_default="pending"),
        sa.Column("decided_by", sa.Integer, nullable=True),
        sa.Column("decided_ms", sa.BigInteger, nullable=True),
        sa.Column("decision_reason", sa.Text, nullable=True),
    )
    conn = op.get_bind()
    import time

    now = time.time_ns() // 1_000_000
    versions = sa.table("zone_versions", *(sa.column(c) for c in (
        "zone_id", "version", "kind", "feature_json", "sha256", "effective_from_ms", "created_ms")))
    for zone_id, kind, text in conn.execute(sa.text("SELECT zone_id, kind, feature_json FROM zones")).all():
        digest = hashlib.sha256(rfc8785.dumps(json.loads(text))).hexdigest()
        conn.execute(versions.insert().values(zone_id=zone_id, version=1, kind=kind, feature_json=text, sha256=digest,
                                              effective_from_ms=None, created_ms=now))
    rows = sa.table("assignments", sa.column("id"), sa.column("chain_start_ms"), sa.column("zone_versions_json"))
    for aid, start, zones in conn.execute(sa.text("SELECT id, start_ms, zones_json FROM assignments")).all():
        conn.execute(rows.update().where(rows.c.id == aid).values(
            chain_start_ms=start, zone_versions_json=json.dumps({z: 1 for z in json.loads(zones)})))
    with op.batch_alter_table("assignments") as b:
        b.alter_column("chain_start_ms", existing_type=sa.BigInteger, nullable=False)


def downgrade() -> None:  # pragma: no cover - tagtrail migrates forward only
    raise NotImplementedError("tagtrail migrates forward only")

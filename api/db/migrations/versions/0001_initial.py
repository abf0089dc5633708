"""Initial schema: users, assignments, zones, breaches, access requests and
the append-only audit log.

Revision ID: 0001
Revises:
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("org", sa.String(100)),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("revoked_ms", sa.BigInteger),
    )
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("subject_id", sa.String(200), nullable=False, index=True),
        sa.Column("device_id", sa.String(200), nullable=False),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger),
        sa.Column("zones_json", sa.Text, nullable=False),
    )
    op.create_table(
        "zones",
        sa.Column("zone_id", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("feature_json", sa.Text, nullable=False),
    )
    op.create_table(
        "breaches",
        sa.Column("breach_id", sa.String(16), primary_key=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("type", sa.String(30), nullable=False, index=True),
        sa.Column("subject_id", sa.String(200), nullable=False, index=True),
        sa.Column("device_id", sa.String(200), nullable=False),
        sa.Column("zone_id", sa.String(200)),
        sa.Column("start", sa.String(24), nullable=False),
        sa.Column("end", sa.String(24), nullable=False),
        sa.Column("start_ms", sa.BigInteger, nullable=False, index=True),
        sa.Column("end_ms", sa.BigInteger, nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("first_seen_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_breaches_subject_start", "breaches", ["subject_id", "start_ms"])
    _create_access_requests()
    _create_audit_log()


def _create_access_requests() -> None:
    op.create_table(
        "access_requests",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("requester_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("subject_id", sa.String(200), nullable=False, index=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("ground", sa.String(30), nullable=False),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger, nullable=False),
        sa.Column("justification", sa.Text, nullable=False),
        sa.Column("necessity", sa.Text, nullable=False),
        sa.Column("reference", sa.String(200)),
        sa.Column("urgency", sa.String(20), nullable=False),
        sa.Column("respond_by_ms", sa.BigInteger),
        sa.Column("too_broad", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False, index=True),
        sa.Column("identity_checked_by", sa.Integer, sa.ForeignKey("users.id")),
        sa.Column("identity_checked_ms", sa.BigInteger),
        sa.Column("identity_check_note", sa.Text),
        sa.Column("outcome", sa.String(40)),
        sa.Column("decision_reason", sa.Text),
        sa.Column("approved_start_ms", sa.BigInteger),
        sa.Column("approved_end_ms", sa.BigInteger),
        sa.Column("decided_by", sa.Integer, sa.ForeignKey("users.id")),
        sa.Column("decided_ms", sa.BigInteger),
        sa.Column("expires_ms", sa.BigInteger),
        sa.Column("guidance_version", sa.String(60)),
        sa.Column("withdrawn_ms", sa.BigInteger),
        sa.Column("version", sa.Integer, nullable=False),
    )


def _create_audit_log() -> None:
    """The audit log table; it is append-only: the database itself refuses edits and deletions."""
    op.create_table(
        "audit_log",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("ts_ms", sa.BigInteger, nullable=False),
        sa.Column("actor_id", sa.Integer),
        sa.Column("actor", sa.String(200)),
        sa.Column("role", sa.String(20)),
        sa.Column("org", sa.String(100)),
        sa.Column("action", sa.String(60), nullable=False, index=True),
        sa.Column("request_id", sa.Integer, index=True),
        sa.Column("subject_pseudonym", sa.String(64)),
        sa.Column("ground", sa.String(30)),
        sa.Column("justification_ref", sa.String(200)),
        sa.Column("extract_sha256", sa.String(64)),
        sa.Column("entry", sa.Text, nullable=False),
        sa.Column("leaf_hash", sa.String(64), nullable=False),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                f"BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )


def downgrade() -> None:
    for name in ("audit_log", "access_requests", "breaches", "zones", "assignments", "users"):
        op.drop_table(name)

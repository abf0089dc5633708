"""Database tables (SQLAlchemy 2 declarative). Times are integer epoch
milliseconds (UTC), like everywhere else in tagtrail, so nothing depends on a
database's time zone handling.

The schema is created and changed only by Alembic migrations
(`api/migrations`); `Base.metadata` is their reference.
"""
from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "User", "AssignmentRow", "ZoneRow", "ZoneVersion", "Correction", "BreachRow", "BreachEvent",
           "AccessRequest", "AuditEntry", "ConsoleSession",
           "IntakeBatch", "IntakeFixChunk", "IntakeEvent", "IntakeQuarantine", "DetectorState",
           "ROLES", "KINDS", "OUTCOMES", "BREACH_STATUSES"]

ROLES: tuple[str, ...] = ("caseworker", "approver", "auditor", "admin", "requester", "feed")
#: Breach queue statuses (the Hub's work list).
BREACH_STATUSES: tuple[str, ...] = ("new", "in_review", "actioned", "withdrawn")
KINDS: tuple[str, ...] = ("trail", "attendance", "sar")  # sar: the wearer's own data (subject access)
OUTCOMES: tuple[str, ...] = (
    "data_provided",
    "partial_data_provided",
    "rejected_insufficient_justification",
    "rejected_too_broad",
    "rejected_other",
)


class Base(DeclarativeBase):
    pass


class User(Base):
    """An API user (an account). Only the SHA-256 of the token is stored.

    `person` says who is behind the account: the name, normalised
    (`api.access.users.person_key`). Accounts come and go (a revoked caseworker may
    come back as an approver); the person stays, and the two-person rule
    compares persons, so nobody decides a request they made from another
    account.
    """

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    person: Mapped[str] = mapped_column(String(200), index=True)
    role: Mapped[str] = mapped_column(String(20))
    org: Mapped[str | None] = mapped_column(String(100), nullable=True)
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)  # urgent records reach an owner here
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    revoked_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class AssignmentRow(Base):
    """One segment of an assignment: the subject wears the device during
    [start_ms, end_ms) under these zones, each at the version in
    `zone_versions_json` ({zone id: version}).

    A condition applies from when it is imposed: when an admin changes an
    assignment's zones, or a zone it uses, the assignment is split at that
    instant (`api.service.conditions`); detection judges each segment as an assignment
    of its own (CONTRACT.md handles assignment boundaries), so the past is
    never re-evaluated against conditions that did not hold then.
    `chain_start_ms` is the start of the assignment the segment belongs to
    (its first segment's start), by which admins address it."""

    __tablename__ = "assignments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(200), index=True)
    device_id: Mapped[str] = mapped_column(String(200))
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    zones_json: Mapped[str] = mapped_column(Text, default="[]")
    chain_start_ms: Mapped[int] = mapped_column(BigInteger)
    zone_versions_json: Mapped[str] = mapped_column(Text, default="{}")


class ZoneRow(Base):
    """A zone's current version (its GeoJSON feature); every version is in `zone_versions`."""

    __tablename__ = "zones"
    zone_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    feature_json: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)


class ZoneVersion(Base):
    """Every version a zone ever had, kept for as long as a record may rest on it.

    `sha256`: of the feature's canonical JSON (RFC 8785), also in the audit
    entry of the change. `effective_from_ms`: from when an admin's change
    applies (None for a version loaded from a file by an operator, which
    applies wherever the file's assignments say)."""

    __tablename__ = "zone_versions"
    zone_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(20))
    feature_json: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    effective_from_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    correction_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Correction(Base):
    """A change to conditions in the past (an assignment that began earlier than
    it was registered, a zone that was wrong all along): proposed by one admin
    with a reason, applied only when a second admin approves it with a reason."""

    __tablename__ = "corrections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # assignment | zone
    payload_json: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    proposed_by: Mapped[int] = mapped_column(Integer)
    proposed_ms: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending | applied | rejected
    decided_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    decided_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    decision_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class BreachRow(Base):
    """A breach or alert record with the contract's fields, upserted by breach_id."""

    __tablename__ = "breaches"
    breach_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))
    type: Mapped[str] = mapped_column(String(30), index=True)
    subject_id: Mapped[str] = mapped_column(String(200), index=True)
    device_id: Mapped[str] = mapped_column(String(200))
    zone_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    start: Mapped[str] = mapped_column(String(24))
    end: Mapped[str] = mapped_column(String(24))
    start_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    duration_s: Mapped[float] = mapped_column(Float)
    priority: Mapped[int] = mapped_column(Integer)
    first_seen_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20), default="new", server_default="new")
    assignee: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    withdrawn_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: The last intake batch of the detection pass that withdrew it (None: not withdrawn by new data).
    withdrawn_batch: Mapped[int | None] = mapped_column(Integer, nullable=True)


class BreachEvent(Base):
    """One change a person made to a record on the work list: its status, its
    assignee and the note they wrote. Free text stays here, in a business
    table; the audit entry of the change holds only the note's SHA-256."""

    __tablename__ = "breach_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    breach_id: Mapped[str] = mapped_column(String(16), index=True)
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(Integer)
    from_status: Mapped[str] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    assignee: Mapped[str | None] = mapped_column(String(200), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)


class IntakeBatch(Base):
    """One batch of rows received (POST /v1/fixes, `tagtrail watch`), with its counts."""

    __tablename__ = "intake_batches"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    received_ms: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(300))
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    fix_rows: Mapped[int] = mapped_column(Integer)
    event_rows: Mapped[int] = mapped_column(Integer)
    fixes_accepted: Mapped[int] = mapped_column(Integer)
    events_accepted: Mapped[int] = mapped_column(Integer)
    quarantined_json: Mapped[str] = mapped_column(Text)
    #: Per device: rows added, first and last instant, the wearers concerned (`api.service.intake.batch_summary`,
    #: an Arrow IPC stream: `api.service.intake.read_summary`); the batch's audit entry holds its SHA-256.
    summary: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class IntakeFixChunk(Base):
    """The fixes one batch added to the intake log, durable before the batch is acknowledged.

    Seqs (arrival order) ``seq_first..seq_last`` number the chunk's rows;
    `data` holds them as an Arrow IPC stream (`api.service.fixlog`): one row per
    batch instead of one per fix, so a 50,000-row batch is one insert and a
    pass or a compaction reads it back in one piece."""

    __tablename__ = "intake_fix_chunks"
    seq_first: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    seq_last: Mapped[int] = mapped_column(BigInteger, index=True)
    batch_id: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class IntakeEvent(Base):
    """An accepted event; `seq` is arrival order."""

    __tablename__ = "intake_events"
    __table_args__ = {"sqlite_autoincrement": True}
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[int] = mapped_column(Integer)
    row: Mapped[int] = mapped_column(Integer)
    device_id: Mapped[str] = mapped_column(String(200))
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    event: Mapped[str] = mapped_column(String(40))


class IntakeQuarantine(Base):
    """A row of a batch that could not be used, with the contract's reason."""

    __tablename__ = "intake_quarantine"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(Integer, index=True)
    received_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # the batch's receipt time
    source: Mapped[str] = mapped_column(String(10))
    row: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(30))
    device_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    ts: Mapped[str | None] = mapped_column(Text, nullable=True)


class DetectorState(Base):
    """Small key/value state of the streaming detector (watermarks, as_of, safe cuts)."""

    __tablename__ = "detector_state"
    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class AccessRequest(Base):
    """A request to see a wearer's trail or attendance, and its decision.

    `version` increases with every change; a decision is written only if the
    version it read is still current, so two concurrent decisions cannot
    both win.
    """

    __tablename__ = "access_requests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    requester_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    subject_id: Mapped[str] = mapped_column(String(200), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    ground: Mapped[str] = mapped_column(String(30))
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    justification: Mapped[str] = mapped_column(Text)
    necessity: Mapped[str] = mapped_column(Text)
    reference: Mapped[str | None] = mapped_column(String(200), nullable=True)
    urgency: Mapped[str] = mapped_column(String(20), default="routine")
    respond_by_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    too_broad: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)  # pending|decided|withdrawn
    created_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    identity_checked_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    identity_checked_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    identity_check_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(40), nullable=True)
    decision_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    approved_start_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    approved_end_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    decided_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    expires_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    guidance_version: Mapped[str | None] = mapped_column(String(60), nullable=True)
    exemptions_json: Mapped[str | None] = mapped_column(Text, nullable=True)  # sar: [{"part", "reason"}]
    extended_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # sar: when the deadline was extended
    extension_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: The wearer's assignments when the data was approved, clipped to the approved
    #: period: JSON ``[{"device_id", "start_ms", "end_ms", "zones"}]``. The extract
    #: reads exactly these, so changing assignments later cannot redirect it.
    #: None for decisions without data and for those made before migration 0004.
    bound_assignments_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    withdrawn_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)


class AuditEntry(Base):
    """One leaf of the audit log's Merkle tree. Append-only: the database
    refuses UPDATE and DELETE on this table (triggers from the migration).

    `entry` is the canonical JSON (RFC 8785) that was hashed; the other
    columns repeat its fields for querying (`tagtrail audit verify` checks
    each against the entry). No coordinates, ever; subjects appear only as
    keyed pseudonyms. `mac` is HMAC-SHA256 of the entry under
    HOME/keys/audit-mac.key: the service wrote this row, so a row INSERTed
    by someone who can write the database but not HOME/keys is never signed
    into a checkpoint. None for rows written before migration 0005.
    """

    __tablename__ = "audit_log"
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ts_ms: Mapped[int] = mapped_column(BigInteger)
    actor_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    actor: Mapped[str | None] = mapped_column(String(200), nullable=True)
    role: Mapped[str | None] = mapped_column(String(20), nullable=True)
    org: Mapped[str | None] = mapped_column(String(100), nullable=True)
    action: Mapped[str] = mapped_column(String(60), index=True)
    request_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    subject_pseudonym: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ground: Mapped[str | None] = mapped_column(String(30), nullable=True)
    justification_ref: Mapped[str | None] = mapped_column(String(200), nullable=True)
    extract_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    entry: Mapped[str] = mapped_column(Text)
    leaf_hash: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str | None] = mapped_column(String(64), nullable=True)


Index("ix_breaches_subject_start", BreachRow.subject_id, BreachRow.start_ms)


class ConsoleSession(Base):
    """A console sign-in (api.web.sessions). Only the SHA-256 of the session id
    is stored: someone who reads the database cannot take over a session. It
    lasts while it is used: `last_seen_ms` older than the idle timeout
    (Settings.console_idle_s) ends it; `ended_ms` is set on sign-out."""

    __tablename__ = "console_sessions"
    id_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, index=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    last_seen_ms: Mapped[int] = mapped_column(BigInteger)
    ended_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Mitigation(Base):
    """A wearer's representation about breaches, and the decision on it (issue 13). The text stays
    here, in a business table; audit entries hold only its SHA-256."""

    __tablename__ = "mitigations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(200), index=True)
    received_ms: Mapped[int] = mapped_column(BigInteger)
    channel: Mapped[str] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(Text)
    attachments_json: Mapped[str] = mapped_column(Text)
    recorded_by: Mapped[int] = mapped_column(Integer)
    recorded_ms: Mapped[int] = mapped_column(BigInteger)
    due_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)  # pending, accepted, rejected
    decided_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    decided_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class MitigationBreach(Base):
    """Which breaches a mitigation names (one or more; a breach may be named by several)."""

    __tablename__ = "mitigation_breaches"
    mitigation_id: Mapped[int] = mapped_column(ForeignKey("mitigations.id"), primary_key=True)
    breach_id: Mapped[str] = mapped_column(String(16), primary_key=True, index=True)


class EscalationDecision(Base):
    """A step of the escalation ladder taken for a wearer (issue 13): what was proposed, what was done
    (None: no action), why when it differs, under which ladder version, on which breaches, and the letter."""

    __tablename__ = "escalation_decisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(200), index=True)
    proposed_step: Mapped[str | None] = mapped_column(String(40), nullable=True)
    step: Mapped[str | None] = mapped_column(String(40), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    ladder_version: Mapped[str] = mapped_column(String(64))
    breach_ids_json: Mapped[str] = mapped_column(Text)
    decided_by: Mapped[int] = mapped_column(Integer)
    decided_ms: Mapped[int] = mapped_column(BigInteger)
    letter: Mapped[str | None] = mapped_column(Text, nullable=True)
    letter_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Wearer(Base):
    """Who owns a wearer's case (issue 13): the caseworker answerable for their reviews."""

    __tablename__ = "wearers"
    subject_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    owner_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    owner_since_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    language: Mapped[str | None] = mapped_column(String(35), nullable=True)  # BCP 47 tag; None: English


class OwnerHistory(Base):
    """From `from_ms` on, the wearer's owner was `owner_id` (None: nobody), until the next row: what the
    reviews report reads for a past month."""

    __tablename__ = "owner_history"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(200), index=True)
    owner_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    from_ms: Mapped[int] = mapped_column(BigInteger)


class LegalHold(Base):
    """A hold on a wearer's data of `classes_json` over [start_ms, end_ms): erasure skips it until lifted."""

    __tablename__ = "legal_holds"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(200), index=True)
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int] = mapped_column(BigInteger)
    classes_json: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    owner_id: Mapped[int] = mapped_column(Integer)
    review_ms: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[int] = mapped_column(Integer)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    lifted_by: Mapped[int | None] = mapped_column(Integer, nullable=True)
    lifted_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    lift_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class RetentionLedger(Base):
    """A wearer whose erasure has begun: when their monitoring ended, and class -> when it was erased
    ("pending" for the audit link between its entry and its key's destruction)."""

    __tablename__ = "retention_ledger"
    subject_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    ended_ms: Mapped[int] = mapped_column(BigInteger)
    erased_json: Mapped[str] = mapped_column(Text)


class WelfareNote(Base):
    """A note staff record about a wearer's welfare (health, housing, family): a review of the period
    is pre-filled with them."""

    __tablename__ = "welfare_notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(200), index=True)
    text: Mapped[str] = mapped_column(Text)
    recorded_by: Mapped[int] = mapped_column(Integer)
    recorded_ms: Mapped[int] = mapped_column(BigInteger)


class Review(Base):
    """A periodic review of a wearer's monitoring: the summary it was decided on, and the outcome."""

    __tablename__ = "reviews"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(200), index=True)
    period_start_ms: Mapped[int] = mapped_column(BigInteger)
    period_end_ms: Mapped[int] = mapped_column(BigInteger)
    summary_json: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(20))  # continue, vary_conditions, end_monitoring
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    decided_by: Mapped[int] = mapped_column(Integer)
    decided_ms: Mapped[int] = mapped_column(BigInteger)


class Device(Base):
    """A tag in the register (issue 13): which batch it came from matters when a batch is recalled."""

    __tablename__ = "devices"
    device_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    serial: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(200))
    batch: Mapped[str] = mapped_column(String(200), index=True)
    issued_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    returned_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class DeviceFault(Base):
    """A fault over [start_ms, end_ms) (end None: still open) on one device, or on every device of a batch."""

    __tablename__ = "device_faults"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_id: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    batch: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    start_ms: Mapped[int] = mapped_column(BigInteger)
    end_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    description: Mapped[str] = mapped_column(Text)
    recorded_by: Mapped[int] = mapped_column(Integer)
    recorded_ms: Mapped[int] = mapped_column(BigInteger)


class EquipmentFaultDecision(Base):
    """A caseworker's decision on a breach inside a device fault: ``fault_confirmed`` (the fault explains
    it: it never counts) or ``fault_cleared`` (the fault had nothing to do with it: it counts)."""

    __tablename__ = "equipment_fault_decisions"
    breach_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    fault_id: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text)
    decided_by: Mapped[int] = mapped_column(Integer)
    decided_ms: Mapped[int] = mapped_column(BigInteger)


class Notification(Base):
    """One message to send about one record version on one channel (webhook or email): the outbox."""

    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("breach_id", "version", "channel", name="uq_notification_version_channel"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    breach_id: Mapped[str] = mapped_column(String(16))
    version: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(10))
    payload_json: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), index=True)  # pending, sent, dead
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_ms: Mapped[int] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    sent_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

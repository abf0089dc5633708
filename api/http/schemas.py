"""HTTP schemas: separate Create (what a client sends) and Public (what it
gets back) models, validated once at the edge.

Timestamps travel as RFC 3339 strings with an offset and are parsed with
`trails.timestamps.parse_timestamp` (a naive timestamp is a 422, never
guessed at); they come back in the contract's form ``...T..:..:..mmmZ``.
Free text must be "non-trivial" (`MIN_TEXT_CHARS` letters or digits: Unicode
categories L* and N*, so invisible or punctuation-only padding does not count)
where governance.md asks for a reason, and every string must be encodable UTF-8
(JSON allows lone surrogates; databases and canonical JSON do not).
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.access.request_input import (  # noqa: F401 - the routers take the input types from here too
    MIN_TEXT_CHARS, AccessRequestCreate, DecisionCreate, Ground, IdentityCheckCreate, In as _In, Kind, Note, Outcome,
    Reason, ShortText, Text, Timestamp, Urgency, count_letters, fmt_ts, parse_ts)

__all__ = ["MIN_TEXT_CHARS", "count_letters", "Timestamp", "AccessRequestCreate", "IdentityCheckCreate",
           "DecisionCreate", "AccessRequestPublic", "AccessRequestList", "BreachPublic", "SubjectBreach",
           "BreachList", "Health", "IntakeResponse", "AssignmentIn", "AssignmentPublic", "AssignmentList",
           "QueueItem", "QueuePage", "SubjectZone", "SubjectSummaryPublic", "AttendanceWindowPublic",
           "CompliancePublic", "BreachStatusChange", "BreachEventPublic", "BreachDetail", "FieldError",
           "ErrorBody", "parse_ts", "fmt_ts"]


class AccessRequestPublic(BaseModel):
    id: int
    requester_id: int
    subject_id: str
    kind: str
    ground: str
    start: str
    end: str
    justification: str
    necessity: str
    reference: str | None
    urgency: str
    respond_by: str | None
    too_broad: bool
    max_period_days: int | None
    status: str = Field(description="pending, decided or withdrawn")
    created_at: str
    identity_checked: bool
    identity_checked_by: int | None
    identity_checked_at: str | None
    outcome: str | None
    decision_reason: str | None
    approved_start: str | None
    approved_end: str | None
    decided_by: int | None
    decided_at: str | None
    expires_at: str | None
    guidance_version: str | None
    withdrawn_at: str | None
    version: int
    exemptions: list[dict] = Field(default_factory=list, description="subject access: the parts withheld and why")
    extended_at: str | None = Field(None, description="subject access: when the one-month deadline was extended")


class AccessRequestList(BaseModel):
    items: list[AccessRequestPublic]
    count: int


class BreachPublic(BaseModel):
    """A record with the contract's fields."""

    breach_id: str
    kind: str
    type: str
    subject_id: str
    device_id: str
    zone_id: str | None
    start: str
    end: str
    duration_s: float
    priority: int


class SubjectBreach(BreachPublic):
    """A wearer's record with its standing: ``withdrawn`` records (removed by
    data received later) are listed only on request, and say why."""

    status: str = Field(description="new, in_review, actioned or withdrawn")
    withdrawn_reason: str | None


class BreachList(BaseModel):
    items: list[SubjectBreach]
    count: int


class Health(BaseModel):
    status: str = Field(description="ok, or audit_failed: data is neither released nor changed until an operator acts")
    audit: str = Field(description="ok, or what the audit log's integrity check found, and when")


class IntakeCounts(BaseModel):
    received: int
    accepted: int
    quarantined: dict[str, int]


class IntakeResponse(BaseModel):
    """What a batch did. Accepted rows are durable when this is returned."""

    batch_id: int
    fixes: IntakeCounts
    events: IntakeCounts


class QueueItem(BreachPublic):
    """A record on the work list, with its status."""

    status: str
    assignee: str | None
    first_seen: str | None
    updated: str | None
    status_changed: str | None
    withdrawn_reason: str | None
    equipment_fault: str | None = Field(None, description="suspected_equipment_fault while the record falls inside "
                                        "a device fault and no caseworker has decided; then fault_confirmed or "
                                        "fault_cleared; null outside any fault")


class QueuePage(BaseModel):
    items: list[QueueItem]
    count: int
    total: int


class AssignmentIn(_In):
    """One assignment, as an entry of SUBJECTS.json."""

    subject_id: ShortText
    device_id: ShortText
    start: Timestamp
    end: Timestamp | None = None
    zones: list[ShortText] = Field(default_factory=list, max_length=100)


class AssignmentPublic(BaseModel):
    """One segment of an assignment (`api.service.conditions`): `start` names the
    assignment, `segment_start`..`end` is the part with these zones, each at
    the version in `zone_versions`."""

    subject_id: str
    device_id: str
    start: str
    segment_start: str
    end: str | None
    zones: list[str]
    zone_versions: dict[str, int]


class AssignmentList(BaseModel):
    items: list[AssignmentPublic]
    count: int


class SubjectZone(BaseModel):
    """One version of a zone a wearer's assignment uses: its GeoJSON feature as stored."""

    zone_id: str
    version: int
    kind: str
    feature: dict


class SubjectSummaryPublic(BaseModel):
    """A wearer's assignment segments (as `GET /v1/admin/assignments` lists them) and their zone versions."""

    subject_id: str
    assignments: list[AssignmentPublic]
    zones: list[SubjectZone]


class AttendanceWindowPublic(BaseModel):
    """One curfew window part, as an attendance extract item (no coordinates)."""

    zone_id: str
    window_start: str
    window_end: str
    status: str = Field(description="home, absent or unknown")
    home_s: float
    absent_s: float
    unknown_s: float


class CompliancePublic(BaseModel):
    subject_id: str
    start: str
    end: str
    as_of: str
    counts: dict[str, int] = Field(description="windows per status (home, absent, unknown), all zones together")
    counts_by_zone: dict[str, dict[str, int]]
    windows: list[AttendanceWindowPublic]


class BreachStatusChange(_In):
    """A caseworker moves a record along the work list."""

    status: Literal["new", "in_review", "actioned"]
    assignee: ShortText | None = None
    note: Note | None = None


class BreachEventPublic(BaseModel):
    """One change a person made to a record: who, when, the status it moved
    from and to, the assignee after it, and the note they wrote."""

    event_id: int
    at: str = Field(description="when the change was made")
    user_id: int
    user: str | None = Field(description="the user's name (null if the account is gone)")
    from_status: str
    to_status: str
    assignee: str | None = Field(description="who the record was assigned to after this change (null: nobody)")
    note: str | None


class BreachDetail(QueueItem):
    """A record with its history on the work list, oldest change first."""

    history: list[BreachEventPublic]


class FieldError(BaseModel):
    """One field at fault in a request that failed validation."""

    loc: list[str | int] = Field(description='where: ["body", "start"], ["query", "limit"], ["path", "breach_id"]')
    msg: str = Field(description="what is wrong with it")
    type: str = Field(description="a machine-readable kind (pydantic's error type), e.g. missing, extra_forbidden")


class ErrorBody(BaseModel):
    """Every error response of the API, whatever its status (`api.http.errors.error_body`)."""

    detail: str = Field(description="what went wrong, naming the offending value or field")
    errors: list[FieldError] | None = Field(None, description="only on a 422 from validation: one item per field "
                                                               "at fault (absent otherwise)")

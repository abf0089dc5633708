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

import unicodedata
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from trails.timestamps import NaiveTimestampError, format_ms, parse_timestamp

from api.db.models import KINDS, OUTCOMES
from api.settings import GROUNDS

__all__ = ["MIN_TEXT_CHARS", "count_letters", "Timestamp", "AccessRequestCreate", "IdentityCheckCreate",
           "DecisionCreate", "AccessRequestPublic", "AccessRequestList", "BreachPublic", "SubjectBreach",
           "BreachList", "Health", "IntakeResponse", "AssignmentIn", "AssignmentPublic", "AssignmentList",
           "QueueItem", "QueuePage", "BreachStatusChange", "BreachEventPublic", "BreachDetail", "FieldError",
           "ErrorBody", "parse_ts", "fmt_ts"]

#: Letters or digits (Unicode L*, N*) a justification, necessity statement or decision reason needs.
MIN_TEXT_CHARS = 20
#: Earliest and latest instants accepted (years 1970..9999): keeps every
#: millisecond value well inside a 64-bit integer.
_MIN_MS, _MAX_MS = 0, 253402300799999

Kind = Literal[tuple(KINDS)]  # type: ignore[valid-type]
Ground = Literal[tuple(GROUNDS)]  # type: ignore[valid-type]
Outcome = Literal[tuple(OUTCOMES)]  # type: ignore[valid-type]
Urgency = Literal["routine", "urgent"]


def _utf8(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    return value


def count_letters(value: str) -> int:
    """Letters and digits in `value` (Unicode categories L* and N*).

    What a reader can read: spaces, punctuation, symbols and invisible
    format characters (zero-width spaces, joiners, direction marks) are not
    explanation, so 30 zero-width spaces count 0, not 30.
    """
    return sum(1 for c in value if unicodedata.category(c)[0] in "LN")


def _non_trivial(value: str) -> str:
    n = count_letters(value)
    if n < MIN_TEXT_CHARS:
        raise ValueError(f"needs at least {MIN_TEXT_CHARS} letters or digits of explanation (got {n})")
    return value


def parse_ts(value: str) -> int:
    """RFC 3339 with offset -> epoch ms, or ValueError with a message naming the value."""
    try:
        ms = parse_timestamp(value)
    except NaiveTimestampError:
        raise ValueError(f"timestamp {value!r} has no UTC offset: add Z or +HH:MM") from None
    except ValueError as exc:
        raise ValueError(f"{exc} (expected RFC 3339 with an offset, e.g. 2024-03-25T18:00:00Z)") from None
    if not _MIN_MS <= ms <= _MAX_MS:
        raise ValueError(f"timestamp {value!r} is outside 1970..9999")
    return ms


def fmt_ts(ms: int | None) -> str | None:
    return None if ms is None else format_ms(ms)


def _timestamp(value: str) -> str:
    parse_ts(value)
    return value


Text = Annotated[str, Field(max_length=10_000), AfterValidator(_utf8)]
ShortText = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_utf8)]
Reason = Annotated[str, Field(max_length=10_000, description=f"at least {MIN_TEXT_CHARS} letters or digits"),
                   AfterValidator(_utf8), AfterValidator(_non_trivial)]
Timestamp = Annotated[str, Field(max_length=40, description="RFC 3339 with a UTC offset, e.g. 2024-03-25T18:00:00Z",
                                 examples=["2024-03-25T18:00:00Z"]),
                      AfterValidator(_utf8), AfterValidator(_timestamp)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class AccessRequestCreate(_In):
    """A request to see one wearer's trail or attendance for one period."""

    subject_id: ShortText
    kind: Kind
    ground: Ground = Field(description="one of the five lawful grounds of the EM DPIA")
    start: Timestamp
    end: Timestamp
    justification: Reason = Field(description="why this data and why this period")
    necessity: Reason = Field(description="why nothing less intrusive will do (the alternative considered)")
    reference: ShortText | None = Field(None, description="case reference; for bail_breach, the breach_id")
    urgency: Urgency = "routine"
    respond_by: Timestamp | None = None


class IdentityCheckCreate(_In):
    """How an external requester's identity was confirmed."""

    note: Reason = Field(description="how the identity was confirmed (call-back number, warrant card, ...)")


class DecisionCreate(_In):
    """An approver's decision. `start`/`end` narrow the period and are
    required for (and only allowed with) partial_data_provided."""

    outcome: Outcome
    reason: Reason
    start: Timestamp | None = None
    end: Timestamp | None = None


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


class BreachStatusChange(_In):
    """A caseworker moves a record along the work list."""

    status: Literal["new", "in_review", "actioned"]
    assignee: ShortText | None = None
    note: Annotated[str, Field(max_length=2000), AfterValidator(_utf8)] | None = None


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

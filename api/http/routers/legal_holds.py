"""`/v1/legal-holds`: place, list, review and lift legal holds on a wearer's
data (`api.service.retention.holds`: the rules and audit entries)."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from api.access.request_input import In, Reason, ShortText, Timestamp, fmt_ts, parse_ts
from api.db.models import LegalHold, User
from api.http.deps import AuditDep, ClockDep, CurrentUser, SessionDep, authorize, commit
from api.http.casework_answers import casework_answered
from api.http.guard import GuardedRoute
from api.service.retention.holds import create_hold, hold_classes, lift_hold, list_holds, review_hold
from api.service.retention.rules import CLASSES

router = APIRouter(prefix="/legal-holds", tags=["retention"], dependencies=[Depends(authorize)],
                   route_class=GuardedRoute)

HoldId = Annotated[int, Path(ge=1, le=2**31 - 1, description="legal hold id")]
DataClass = Literal[CLASSES]  # type: ignore[valid-type]


class HoldCreate(In):
    subject_id: ShortText
    start: Timestamp = Field(description="the held period's start (inclusive)")
    end: Timestamp = Field(description="the held period's end (exclusive)")
    classes: list[DataClass] = Field(min_length=1, max_length=len(CLASSES))
    reason: Reason
    owner: ShortText = Field(description="the member of staff who answers for the hold")
    review: Timestamp = Field(description="when the hold must next be reviewed")


class HoldReview(In):
    next_review: Timestamp
    note: Reason


class HoldLift(In):
    reason: Reason


class HoldPublic(BaseModel):
    id: int
    subject_id: str
    start: str
    end: str
    classes: list[str]
    reason: str
    owner: str
    review: str
    created: str
    lifted: str | None
    lift_reason: str | None


def _public(session, h: LegalHold) -> HoldPublic:
    owner = session.get(User, h.owner_id)
    return HoldPublic(id=h.id, subject_id=h.subject_id, start=fmt_ts(h.start_ms), end=fmt_ts(h.end_ms),
                      classes=hold_classes(h), reason=h.reason, owner=owner.name if owner else str(h.owner_id),
                      review=fmt_ts(h.review_ms), created=fmt_ts(h.created_ms), lifted=fmt_ts(h.lifted_ms),
                      lift_reason=h.lift_reason)


@router.post("", operation_id="create_legal_hold", response_model=HoldPublic, status_code=201)
def post_hold(body: HoldCreate, session: SessionDep, user: CurrentUser, audit: AuditDep,
              clock: ClockDep) -> HoldPublic:
    """Hold a wearer's data of some classes over a period: retention does not erase it until the hold is
    lifted, whatever the rules say.

    Roles: approver, admin. 422 for an empty or reversed period, a review date not in the future, an owner
    who is not active staff, or a wearer with no assignment.
    """
    with casework_answered():
        row = create_hold(session, audit, user, subject_id=body.subject_id, start_ms=parse_ts(body.start),
                          end_ms=parse_ts(body.end), classes=list(body.classes), reason=body.reason,
                          owner_name=body.owner, review_ms=parse_ts(body.review), now_ms=clock())
    out = _public(session, row)
    commit(session, audit)
    return out


@router.get("", operation_id="list_legal_holds", response_model=list[HoldPublic])
def get_holds(session: SessionDep, user: CurrentUser, audit: AuditDep, clock: ClockDep,
              subject_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
              active: bool | None = None, review_due: bool = False) -> list[HoldPublic]:
    """Holds, soonest review first; `active=true` open ones only; `review_due=true` open ones whose review
    date has come. The read is audited (ids only).

    Roles: approver, auditor, admin.
    """
    now = clock()
    rows = list_holds(session, subject_id=subject_id, active=active, review_due_at=now if review_due else None)
    audit.append(session, action="retention.hold_list", actor=user, now_ms=now, subject_id=subject_id,
                 detail={"active": active, "review_due": review_due, "ids": [h.id for h in rows]})
    out = [_public(session, h) for h in rows]
    commit(session, audit)
    return out


@router.post("/{hold_id}/review", operation_id="review_legal_hold", response_model=HoldPublic)
def post_review(hold_id: HoldId, body: HoldReview, session: SessionDep, user: CurrentUser, audit: AuditDep,
                clock: ClockDep) -> HoldPublic:
    """Record that the hold was reviewed and is still needed, until `next_review`.

    Roles: approver, admin. 404 unknown; 409 lifted; 422 a next review not in the future.
    """
    with casework_answered():
        row = review_hold(session, audit, user, hold_id, next_review_ms=parse_ts(body.next_review), note=body.note,
                          now_ms=clock())
    out = _public(session, row)
    commit(session, audit)
    return out


@router.post("/{hold_id}/lift", operation_id="lift_legal_hold", response_model=HoldPublic)
def post_lift(hold_id: HoldId, body: HoldLift, session: SessionDep, user: CurrentUser, audit: AuditDep,
              clock: ClockDep) -> HoldPublic:
    """Lift the hold: what it covered is erased by the next retention pass if a rule says so.

    Roles: approver, admin. 404 unknown; 409 already lifted.
    """
    with casework_answered():
        row = lift_hold(session, audit, user, hold_id, reason=body.reason, now_ms=clock())
    out = _public(session, row)
    commit(session, audit)
    return out

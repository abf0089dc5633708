"""Owners and reviews over HTTP: `PUT /v1/subjects/{id}/owner`, `GET
/v1/reviews/due` and `/overdue`, `GET /v1/subjects/{id}/review-summary`,
`POST /v1/subjects/{id}/reviews`, and `GET /v1/reports/reviews` (wearers
without an owner against the inspectorate's 1% bar, overdue reviews by age
band). Rules and audit entries: `api.service.reviews`."""
from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from api.access.request_input import In, fmt_ts
from api.db.models import Review
from api.http.deps import AuditDep, ClockDep, CurrentUser, SessionDep, SettingsDep, authorize, commit
from api.http.errors import Unprocessable
from api.http.guard import GuardedRoute
from api.service.review_report import days_overdue, reviews_report
from api.service.reviews import ReviewError, read_review_summary, read_reviews, record_review, set_owner

router = APIRouter(tags=["casework"], dependencies=[Depends(authorize)], route_class=GuardedRoute)

SubjectId = Annotated[str, Path(min_length=1, max_length=200)]


class OwnerIn(In):
    owner: str | None = Field(None, min_length=1, max_length=200, description="an active caseworker's name; null: "
                                                                             "nobody")


class ReviewIn(In):
    outcome: Literal["continue", "vary_conditions", "end_monitoring"]
    reason: str | None = Field(None, max_length=10_000, description="required unless the outcome is continue")


class DuePublic(BaseModel):
    subject_id: str
    owner: str | None
    since: str
    due: str
    days_overdue: int


class ReviewPublic(BaseModel):
    id: int
    subject_id: str
    period_start: str
    period_end: str
    summary: dict
    outcome: str
    reason: str | None
    decided: str


def _due(d, now_ms: int) -> DuePublic:
    return DuePublic(subject_id=d.subject_id, owner=d.owner, since=fmt_ts(d.since_ms), due=fmt_ts(d.due_ms),
                     days_overdue=days_overdue(d.due_ms, now_ms))


@router.put("/subjects/{subject_id}/owner", operation_id="set_owner")
def put_owner(subject_id: SubjectId, body: OwnerIn, session: SessionDep, user: CurrentUser, audit: AuditDep,
              clock: ClockDep) -> dict:
    """Give the wearer an owner from the caseworkers (or nobody).

    Roles: admin.

    422 for someone who is not an active caseworker, or a wearer with no assignment.
    """
    try:
        row = set_owner(session, audit, user, subject_id, body.owner, now_ms=clock())
    except ReviewError as exc:
        raise Unprocessable(str(exc)) from None
    out = {"subject_id": subject_id, "owner": body.owner, "since": fmt_ts(row.owner_since_ms)}
    commit(session, audit)
    return out


@router.get("/reviews/due", operation_id="reviews_due", response_model=list[DuePublic])
def get_due(session: SessionDep, user: CurrentUser, audit: AuditDep, settings: SettingsDep, clock: ClockDep,
            within_days: Annotated[int, Query(ge=0, le=366)] = 14) -> list[DuePublic]:
    """Wearers on monitoring whose review falls due within `within_days` days (overdue ones included),
    soonest first, with their owner. The read is audited.

    Roles: caseworker, approver, auditor, admin.
    """
    now = clock()
    rows = read_reviews(session, audit, user, now_ms=now, every_days=settings.review_every_days,
                        within_days=within_days)
    out = [_due(d, now) for d in rows]
    commit(session, audit)
    return out


@router.get("/reviews/overdue", operation_id="reviews_overdue", response_model=list[DuePublic])
def get_overdue(session: SessionDep, user: CurrentUser, audit: AuditDep, settings: SettingsDep,
                clock: ClockDep) -> list[DuePublic]:
    """Wearers on monitoring whose review is past due, most overdue first. The read is audited.

    Roles: caseworker, approver, auditor, admin.
    """
    now = clock()
    rows = read_reviews(session, audit, user, now_ms=now, every_days=settings.review_every_days)
    out = [_due(d, now) for d in rows]
    commit(session, audit)
    return out


@router.get("/subjects/{subject_id}/review-summary", operation_id="review_summary")
def get_summary(subject_id: SubjectId, session: SessionDep, user: CurrentUser, audit: AuditDep,
                settings: SettingsDep, clock: ClockDep) -> dict:
    """The summary a review decided now would rest on: the period since the last review (or the start).

    Roles: caseworker, approver, auditor, admin. 422 for a wearer not on monitoring.
    """
    try:
        summary, due = read_review_summary(session, audit, user, settings.home, subject_id, now_ms=clock(),
                                           every_days=settings.review_every_days)
    except ReviewError as exc:
        raise Unprocessable(str(exc)) from None
    commit(session, audit)
    return {**summary, "due": fmt_ts(due.due_ms)}


@router.post("/subjects/{subject_id}/reviews", operation_id="record_review", response_model=ReviewPublic,
             status_code=201)
def post_review(subject_id: SubjectId, body: ReviewIn, request: Request, session: SessionDep, user: CurrentUser, audit: AuditDep,
                settings: SettingsDep, clock: ClockDep) -> ReviewPublic:
    """Decide the wearer's review: continue, vary_conditions or end_monitoring (which ends their open
    assignments now: detection stops there). The period's summary is kept with it.

    Roles: caseworker. 422 for a wearer not on monitoring, or an outcome other than continue without a reason.
    """
    try:
        row: Review = record_review(session, audit, user, settings.home, subject_id, outcome=body.outcome,
                                    reason=body.reason, every_days=settings.review_every_days, now_ms=clock())
    except ReviewError as exc:
        raise Unprocessable(str(exc)) from None
    out = ReviewPublic(id=row.id, subject_id=row.subject_id, period_start=fmt_ts(row.period_start_ms),
                       period_end=fmt_ts(row.period_end_ms), summary=json.loads(row.summary_json),
                       outcome=row.outcome, reason=row.reason, decided=fmt_ts(row.decided_ms))
    commit(session, audit)
    if body.outcome == "end_monitoring":
        request.app.state.stream.notify()  # continuous detection picks the ended assignment up now
    return out


@router.get("/reports/reviews", operation_id="report_reviews")
def get_report(session: SessionDep, user: CurrentUser, audit: AuditDep, settings: SettingsDep,
               clock: ClockDep) -> dict:
    """Wearers on monitoring without an owner against the inspectorate's bar (at most 1% in any month), and
    overdue reviews by how long overdue: now, and at the end of every month since monitoring began
    (`months`, oldest first; `months_over_bar` names those over the bar). Counts only. The read is audited.

    Roles: approver, auditor, admin.
    """
    now = clock()
    out = reviews_report(session, now_ms=now, every_days=settings.review_every_days)
    audit.append(session, action="report.read", actor=user, now_ms=now, detail={"report": "reviews"})
    commit(session, audit)
    return out

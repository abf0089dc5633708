"""`/v1/subjects/{subject_id}/escalation`: the ladder's proposal for a wearer
and the caseworker's decision on it; `/v1/escalations/{id}/letter`: the
letter that decision generated. Rules: `api.service.ladder` (the proposal)
and `api.service.escalation` (the decision); this module is the HTTP edge."""
from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, Field

from api.access.request_input import In, fmt_ts
from api.db.models import EscalationDecision
from api.http.deps import AuditDep, ClockDep, CurrentUser, SessionDep, SettingsDep, authorize, commit
from api.http.errors import NotFound, Unprocessable
from api.http.guard import GuardedRoute
from api.service.casework_errors import CaseworkNotFound
from api.service.escalation import EscalationError, decide_escalation, read_escalation, read_letter
from api.service.ladder import LadderError, load_ladder

router = APIRouter(tags=["casework"], dependencies=[Depends(authorize)], route_class=GuardedRoute)

SubjectId = Annotated[str, Path(min_length=1, max_length=200)]
DecisionId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class EscalationDecisionIn(In):
    step: str | None = Field(None, max_length=40, description="the step taken; null for no action")
    reason: str | None = Field(None, max_length=10_000, description="required when the step differs from the "
                                                                    "proposal")


class DecisionPublic(BaseModel):
    id: int
    proposed_step: str | None
    step: str | None
    reason: str | None
    ladder_version: str
    breach_ids: list[str]
    decided: str
    letter_sha256: str | None


class EscalationView(BaseModel):
    subject_id: str
    proposed_step: str | None
    why: str
    counted: list[str]
    ladder_version: str
    decisions: list[DecisionPublic]


def _public(d: EscalationDecision) -> DecisionPublic:
    return DecisionPublic(id=d.id, proposed_step=d.proposed_step, step=d.step, reason=d.reason,
                          ladder_version=d.ladder_version, breach_ids=json.loads(d.breach_ids_json),
                          decided=fmt_ts(d.decided_ms), letter_sha256=d.letter_sha256)


def _ladder(settings):
    try:
        return load_ladder(settings.home)
    except LadderError as exc:
        raise Unprocessable(str(exc)) from None


@router.get("/subjects/{subject_id}/escalation", operation_id="get_escalation", response_model=EscalationView)
def get_escalation(subject_id: SubjectId, session: SessionDep, user: CurrentUser, audit: AuditDep,
                   settings: SettingsDep, clock: ClockDep) -> EscalationView:
    """The next step the escalation ladder (HOME/escalation.json) proposes for the wearer, from their
    unexcused breaches, and the decisions taken so far. The read is audited.

    Roles: caseworker, approver, auditor, admin.
    """
    ladder, now = _ladder(settings), clock()
    p, decisions = read_escalation(session, audit, user, ladder, subject_id, now_ms=now)
    out = EscalationView(subject_id=subject_id, proposed_step=p.step, why=p.why, counted=list(p.counted),
                         ladder_version=ladder.version, decisions=[_public(d) for d in decisions])
    commit(session, audit)
    return out


@router.post("/subjects/{subject_id}/escalation", operation_id="decide_escalation", response_model=DecisionPublic,
             status_code=201)
def post_escalation(subject_id: SubjectId, body: EscalationDecisionIn, session: SessionDep, user: CurrentUser,
                    audit: AuditDep, settings: SettingsDep, clock: ClockDep) -> DecisionPublic:
    """Confirm the proposed step (send its step) or override it (another step of the ladder, or null for no
    action) with a reason; a step with a letter template gets its letter (in the wearer's recorded language
    where a template exists, English otherwise), hashed in the audit entry.

    Roles: caseworker.

    422 for a step not on the ladder, or an override without a reason.
    """
    try:
        row = decide_escalation(session, audit, user, _ladder(settings), subject_id, step=body.step,
                                reason=body.reason, now_ms=clock(), home=settings.home)
    except EscalationError as exc:
        raise Unprocessable(str(exc)) from None
    out = _public(row)
    commit(session, audit)
    return out


@router.get("/escalations/{decision_id}/letter", operation_id="escalation_letter",
            responses={200: {"content": {"text/plain": {}}, "description": "the letter; X-Letter-SHA256"}})
def get_letter(decision_id: DecisionId, session: SessionDep, user: CurrentUser, audit: AuditDep,
               clock: ClockDep) -> Response:
    """The letter an escalation decision generated, as recorded (the same bytes every time).

    Roles: caseworker. 404 for an unknown decision or one without a letter.
    """
    try:
        d = read_letter(session, audit, user, decision_id, now_ms=clock())
    except CaseworkNotFound as exc:
        raise NotFound(str(exc)) from None
    commit(session, audit)
    return Response(content=d.letter.encode("utf-8"), media_type="text/plain; charset=utf-8",
                    headers={"X-Letter-SHA256": d.letter_sha256 or "",
                             "Content-Disposition": f'attachment; filename="escalation-{d.id}-letter.txt"'})

"""`/v1/mitigations`: a wearer's representation about breaches, the decision
on it within the working-day deadline, the overdue list and the response
letter. The rules and audit entries are `api.service.mitigations`; this
module is the HTTP edge."""
from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, Field

from api.access.request_input import In, Reason, ShortText, Text, Timestamp, fmt_ts, parse_ts
from api.db.models import Mitigation
from api.http.deps import AuditDep, ClockDep, CurrentUser, SessionDep, SettingsDep, authorize, commit
from api.http.errors import NotFound
from api.http.casework_answers import casework_answered
from api.http.guard import GuardedRoute
from api.service.mitigations import (CHANNELS, NewMitigation,
                                     breaches_of, decide_mitigation, read_mitigations, record_mitigation,
                                     response_letter)

router = APIRouter(prefix="/mitigations", tags=["casework"], dependencies=[Depends(authorize)],
                   route_class=GuardedRoute)

MitigationId = Annotated[int, Path(ge=1, le=2**31 - 1, description="mitigation id")]
BreachIdText = Annotated[str, Field(min_length=16, max_length=16, pattern="^[0-9a-f]{16}$")]
Sha256 = Annotated[str, Field(min_length=64, max_length=64, pattern="^[0-9a-f]{64}$")]


class Attachment(In):
    name: ShortText
    sha256: Sha256


class MitigationCreate(In):
    subject_id: ShortText
    breach_ids: list[BreachIdText] = Field(min_length=1, max_length=100)
    received: Timestamp = Field(description="when the representation arrived")
    channel: Literal[CHANNELS]  # type: ignore[valid-type]
    text: Annotated[Text, Field(min_length=1)]
    attachments: list[Attachment] = Field(default_factory=list, max_length=50)


class MitigationDecision(In):
    outcome: Literal["accepted", "rejected"]
    reason: Reason


class MitigationPublic(BaseModel):
    id: int
    subject_id: str
    breach_ids: list[str]
    received: str
    channel: str
    text: str
    attachments: list[dict]
    due: str
    status: str
    decided: str | None
    reason: str | None


def _public(session, m: Mitigation) -> MitigationPublic:
    return MitigationPublic(id=m.id, subject_id=m.subject_id, breach_ids=breaches_of(session, m.id),
                            received=fmt_ts(m.received_ms), channel=m.channel, text=m.text,
                            attachments=json.loads(m.attachments_json), due=fmt_ts(m.due_ms), status=m.status,
                            decided=fmt_ts(m.decided_ms), reason=m.reason)


@router.post("", operation_id="record_mitigation", response_model=MitigationPublic, status_code=201)
def post_mitigation(body: MitigationCreate, session: SessionDep, user: CurrentUser, audit: AuditDep,
                    settings: SettingsDep, clock: ClockDep) -> MitigationPublic:
    """Record a wearer's representation about one or more of their breaches; a decision is due within
    the service's working days (`mitigation_days`, default 20) of its receipt.

    Roles: caseworker.

    422 for a breach that is not the wearer's or does not exist, or a receipt in the future.
    """
    new = NewMitigation(subject_id=body.subject_id, breach_ids=tuple(body.breach_ids),
                        received_ms=parse_ts(body.received), channel=body.channel, text=body.text,
                        attachments=tuple((a.name, a.sha256) for a in body.attachments))
    with casework_answered():
        row = record_mitigation(session, audit, user, new, working_days=settings.mitigation_days, now_ms=clock())
    out = _public(session, row)
    commit(session, audit)
    return out


@router.get("", operation_id="list_mitigations", response_model=list[MitigationPublic])
def get_mitigations(session: SessionDep, user: CurrentUser, audit: AuditDep, clock: ClockDep,
                    subject_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
                    status: Literal["pending", "accepted", "rejected"] | None = None,
                    overdue: bool = False) -> list[MitigationPublic]:
    """Mitigations, oldest deadline first; `overdue=true`: only those still undecided past their
    deadline. The read is audited (ids only).

    Roles: caseworker, approver, auditor, admin.
    """
    rows = read_mitigations(session, audit, user, now_ms=clock(), subject_id=subject_id, status=status,
                            overdue=overdue)
    out = [_public(session, m) for m in rows]
    commit(session, audit)
    return out


@router.get("/{mitigation_id}", operation_id="get_mitigation", response_model=MitigationPublic)
def get_mitigation(mitigation_id: MitigationId, session: SessionDep, user: CurrentUser, audit: AuditDep,
                   clock: ClockDep) -> MitigationPublic:
    """One mitigation with its text and decision; the read is audited.

    Roles: caseworker, approver, auditor, admin. 404 for an unknown id.
    """
    m = session.get(Mitigation, mitigation_id)
    if m is None:
        raise NotFound(f"mitigation {mitigation_id} not found")
    audit.append(session, action="mitigation.read", actor=user, subject_id=m.subject_id, now_ms=clock(),
                 justification_ref=f"mitigation:{m.id}", detail={"mitigation_id": m.id})
    out = _public(session, m)
    commit(session, audit)
    return out


@router.post("/{mitigation_id}/decision", operation_id="decide_mitigation", response_model=MitigationPublic)
def post_decision(mitigation_id: MitigationId, body: MitigationDecision, session: SessionDep, user: CurrentUser,
                  audit: AuditDep, clock: ClockDep) -> MitigationPublic:
    """Accept (the breaches it names are excused: they stay on the record with the excuse and no longer
    count toward escalation) or reject, with a reason.

    Roles: caseworker. 404 for an unknown id; 409 once decided.
    """
    with casework_answered():
        row = decide_mitigation(session, audit, user, mitigation_id, outcome=body.outcome, reason=body.reason,
                                now_ms=clock())
    out = _public(session, row)
    commit(session, audit)
    return out


@router.get("/{mitigation_id}/letter", operation_id="mitigation_letter",
            responses={200: {"description": "the response letter; X-Letter-SHA256 is its SHA-256",
                             "content": {"text/plain": {}}}})
def get_letter(mitigation_id: MitigationId, session: SessionDep, user: CurrentUser, audit: AuditDep,
               settings: SettingsDep, clock: ClockDep) -> Response:
    """The response letter for a decided mitigation, from the outcome's template in the wearer's recorded
    language where one exists (HOME/letters/<language>/, then the package's), English otherwise; its
    SHA-256 is audited.

    Roles: caseworker. 404 for an unknown id; 409 while undecided.
    """
    with casework_answered():
        data, digest = response_letter(session, audit, user, mitigation_id, now_ms=clock(),
                                       home=settings.home)
    commit(session, audit)
    return Response(content=data, media_type="text/plain; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="mitigation-{mitigation_id}-letter.txt"',
                             "X-Letter-SHA256": digest})

"""`/v1/subjects/{subject_id}/breaches`: a wearer's breach and alert records
(the contract's fields, with their status), from the database `tagtrail
detect --db` and continuous detection fill.

Records that continuous detection withdrew (data received later removed
them) are not the wearer's breaches any more: they are left out unless
asked for with ``include_withdrawn=true``, and then carry ``status:
withdrawn`` and the reason, so a withdrawn record is never read as live.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy import exists, select

from api.http.deps import AuditDep, ClockDep, CurrentUser, SessionDep, authorize, commit
from api.http.guard import GuardedRoute
from api.http.errors import NotFound
from api.db.models import AssignmentRow, BreachRow
from api.http.schemas import BreachList, SubjectBreach

router = APIRouter(prefix="/subjects", tags=["subjects"], dependencies=[Depends(authorize)],
                   route_class=GuardedRoute)


@router.get("/{subject_id}/breaches", operation_id="list_subject_breaches", response_model=BreachList)
def list_subject_breaches(
        subject_id: Annotated[str, Path(max_length=200)], session: SessionDep, user: CurrentUser,
        audit: AuditDep, clock: ClockDep,
        priority: Annotated[int | None, Query(ge=1, le=4, description="1 (act first) .. 4")] = None,
        type: Annotated[str | None, Query(max_length=30)] = None,
        include_withdrawn: Annotated[bool, Query(description="also list withdrawn records (status withdrawn, "
                                                             "with withdrawn_reason)")] = False) -> BreachList:
    """A wearer's breach and alert records, oldest first, optionally by
    priority and type; withdrawn records only with `include_withdrawn`.
    404 for a wearer unknown to the database.

    Roles: caseworker, approver, auditor, admin.
    """
    known = session.scalar(select(exists().where(AssignmentRow.subject_id == subject_id))) or session.scalar(
        select(exists().where(BreachRow.subject_id == subject_id)))
    if not known:
        raise NotFound(f"subject {subject_id!r} is not in the database")
    q = select(BreachRow).where(BreachRow.subject_id == subject_id).order_by(BreachRow.start_ms, BreachRow.breach_id)
    if priority is not None:
        q = q.where(BreachRow.priority == priority)
    if type is not None:
        q = q.where(BreachRow.type == type)
    if not include_withdrawn:
        q = q.where(BreachRow.status != "withdrawn")
    rows = list(session.scalars(q))
    items = [SubjectBreach(breach_id=b.breach_id, kind=b.kind, type=b.type, subject_id=b.subject_id,
                           device_id=b.device_id, zone_id=b.zone_id, start=b.start, end=b.end,
                           duration_s=b.duration_s, priority=b.priority, status=b.status,
                           withdrawn_reason=b.withdrawn_reason) for b in rows]
    audit.append(session, action="breach.read", actor=user, subject_id=subject_id, now_ms=clock(),
                 detail={"priority": priority, "type": type, "include_withdrawn": include_withdrawn,
                         "breach_ids": [b.breach_id for b in rows]})
    commit(session, audit)
    return BreachList(items=items, count=len(items))

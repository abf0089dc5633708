"""`/v1/breaches`: the Hub's work list (the breach queue) and its statuses.

Records come from detection (`tagtrail detect --db`, or continuous detection
in the service); each carries a status: ``new``, ``in_review``, ``actioned``,
or ``withdrawn`` (set only by detection, with a reason, when data received
later removes the record; it is never deleted). `GET /v1/breaches/{id}`
gives one record with its history: every status change, who made it and
when, the assignee it left and the note written with it. Every read and
every status change is audited.
"""
from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from sqlalchemy import func, select

from api.http.deps import AuditDep, ClockDep, CurrentUser, SessionDep, authorize, commit
from api.http.guard import GuardedRoute
from api.http.errors import Conflict, NotFound, Unprocessable
from api.db.models import BreachEvent, BreachRow, User
from api.http.schemas import BreachDetail, BreachEventPublic, BreachStatusChange, QueueItem, QueuePage, fmt_ts
from geofence.records import RECORD_TYPES

router = APIRouter(prefix="/breaches", tags=["breach queue"], dependencies=[Depends(authorize)], route_class=GuardedRoute)

Status = Literal["new", "in_review", "actioned", "withdrawn"]
RecordType = Literal[RECORD_TYPES]  # type: ignore[valid-type]
BreachId = Annotated[str, Path(min_length=16, max_length=16, pattern="^[0-9a-f]{16}$")]


def _item(b: BreachRow) -> QueueItem:
    return QueueItem(breach_id=b.breach_id, kind=b.kind, type=b.type, subject_id=b.subject_id, device_id=b.device_id,
                     zone_id=b.zone_id, start=b.start, end=b.end, duration_s=b.duration_s, priority=b.priority,
                     status=b.status, assignee=b.assignee, first_seen=fmt_ts(b.first_seen_ms),
                     updated=fmt_ts(b.updated_ms), status_changed=fmt_ts(b.status_ms),
                     withdrawn_reason=b.withdrawn_reason)


@router.get("/queue", operation_id="breach_queue", response_model=QueuePage)
def breach_queue(session: SessionDep, user: CurrentUser, audit: AuditDep, clock: ClockDep,
                 status: Annotated[list[Status] | None, Query(description="default: new and in_review")] = None,
                 priority: Annotated[int | None, Query(ge=1, le=4)] = None,
                 kind: Literal["breach", "alert"] | None = None,
                 type: Annotated[list[RecordType] | None,
                                 Query(description="record types (repeat for several)")] = None,
                 subject_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
                 assignee: Annotated[str | None, Query(max_length=200)] = None,
                 limit: Annotated[int, Query(ge=1, le=500)] = 100,
                 offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0) -> QueuePage:
        """The work list: records by priority (1 first), then oldest first.
        Filters combine (all must hold); a query parameter not listed here is
        a 422, never ignored.

        Roles: caseworker, approver, auditor, admin.
        """
        statuses = sorted(set(status)) if status else ["in_review", "new"]
        types = sorted(set(type)) if type else None
        q = select(BreachRow).where(BreachRow.status.in_(statuses))
        if priority is not None:
            q = q.where(BreachRow.priority == priority)
        if kind is not None:
            q = q.where(BreachRow.kind == kind)
        if types is not None:
            q = q.where(BreachRow.type.in_(types))
        if subject_id is not None:
            q = q.where(BreachRow.subject_id == subject_id)
        if assignee is not None:
            q = q.where(BreachRow.assignee == assignee)
        total = session.scalar(select(func.count()).select_from(q.subquery()))
        rows = list(session.scalars(q.order_by(BreachRow.priority, BreachRow.first_seen_ms, BreachRow.start_ms,
                                               BreachRow.breach_id).limit(limit).offset(offset)))
        audit.append(session, action="breach.queue.read", actor=user, subject_id=subject_id, now_ms=clock(),
                     detail={"status": statuses, "priority": priority, "kind": kind, "type": types, "limit": limit,
                             "offset": offset, "breach_ids": [b.breach_id for b in rows]})
        out = QueuePage(items=[_item(b) for b in rows], count=len(rows), total=int(total or 0))
        commit(session, audit)
        return out


@router.get("/stream-status", operation_id="stream_status")
def stream_status(request: Request, session: SessionDep, user: CurrentUser) -> dict:
    """How far continuous detection has got: rows received and not yet
    processed (0 when the queue is up to date), the as_of it stands at, and
    the last error of the background pass, if any. Not audited: it holds no
    personal data.

    Roles: admin, auditor, feed.
    """
    return request.app.state.stream.status(session)


@router.post("/{breach_id}/status", operation_id="set_breach_status", response_model=QueueItem)
def set_breach_status(breach_id: BreachId, body: BreachStatusChange, session: SessionDep, user: CurrentUser,
                      audit: AuditDep, clock: ClockDep) -> QueueItem:
    """Move a record along the work list (new, in_review, actioned) and, when
    `assignee` is given, (un)assign it: the name of an active user, or null.
    Without `assignee` the assignment stays as it is. The note is kept with
    the record's history; the audit log holds only its SHA-256.

    Roles: caseworker. A withdrawn record cannot be changed (409); only
    detection withdraws. An assignee who is not an active user is a 422.
    """
    b = session.get(BreachRow, breach_id)
    if b is None:
        raise NotFound(f"breach {breach_id} not found")
    if b.status == "withdrawn":
        raise Conflict(f"breach {breach_id} was withdrawn by detection ({b.withdrawn_reason}); it cannot be changed")
    assignee = b.assignee
    if "assignee" in body.model_fields_set:
        if body.assignee is not None and session.scalar(select(func.count()).select_from(User).where(
                User.name == body.assignee, User.revoked_ms.is_(None))) == 0:
            raise Unprocessable(f"assignee {body.assignee!r} is not an active user")
        assignee = body.assignee
    now = clock()
    before = {"status": b.status, "assignee": b.assignee}
    event = BreachEvent(breach_id=breach_id, ts_ms=now, user_id=user.id, from_status=b.status, to_status=body.status,
                        assignee=assignee, note=body.note)
    session.add(event)
    b.status, b.status_ms, b.assignee = body.status, now, assignee
    session.flush()
    audit.append(session, action="breach.status", actor=user, subject_id=b.subject_id,
                 justification_ref=f"breach:{breach_id}", now_ms=now,
                 detail={"breach_id": breach_id, "event_id": event.id, "from": before,
                         "to": {"status": b.status, "assignee": b.assignee},
                         "note_sha256": None if body.note is None else hashlib.sha256(body.note.encode()).hexdigest()})
    out = _item(b)
    commit(session, audit)
    return out


@router.get("/{breach_id}", operation_id="get_breach", response_model=BreachDetail)
def get_breach(breach_id: BreachId, session: SessionDep, user: CurrentUser, audit: AuditDep,
               clock: ClockDep) -> BreachDetail:
    """One record and its history on the work list, oldest change first:
    each status change with who made it, when, the assignee it left and the
    note written with it (notes are kept here, not in the audit log). The
    read is audited (the record's wearer by pseudonym).

    Roles: caseworker, approver, auditor, admin. 404 for an unknown breach_id.
    """
    b = session.get(BreachRow, breach_id)
    if b is None:
        raise NotFound(f"breach {breach_id} not found")
    events = session.execute(
        select(BreachEvent, User.name).outerjoin(User, User.id == BreachEvent.user_id)
        .where(BreachEvent.breach_id == breach_id).order_by(BreachEvent.ts_ms, BreachEvent.id)).all()
    history = [BreachEventPublic(event_id=e.id, at=fmt_ts(e.ts_ms), user_id=e.user_id, user=name,
                                 from_status=e.from_status, to_status=e.to_status, assignee=e.assignee, note=e.note)
               for e, name in events]
    audit.append(session, action="breach.read", actor=user, subject_id=b.subject_id,
                 justification_ref=f"breach:{breach_id}", now_ms=clock(),
                 detail={"breach_id": breach_id, "event_ids": [h.event_id for h in history]})
    out = BreachDetail(**_item(b).model_dump(), history=history)
    commit(session, audit)
    return out

"""`/v1/breaches`: the Hub's work list (the breach queue) and its statuses.

Records come from detection (`tagtrail detect --db`, or continuous detection
in the service); each carries a status: ``new``, ``in_review``, ``actioned``,
or ``withdrawn`` (set only by detection, with a reason, when data received
later removes the record; it is never deleted). Every read and every status
change is audited.
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
from api.http.schemas import BreachStatusChange, QueueItem, QueuePage, fmt_ts

router = APIRouter(prefix="/breaches", tags=["breach queue"], dependencies=[Depends(authorize)], route_class=GuardedRoute)

Status = Literal["new", "in_review", "actioned", "withdrawn"]


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
                 assignee: Annotated[str | None, Query(max_length=200)] = None,
                 limit: Annotated[int, Query(ge=1, le=500)] = 100,
                 offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0) -> QueuePage:
        """The work list: records by priority (1 first), then oldest first.

        Roles: caseworker, approver, auditor, admin.
        """
        statuses = sorted(set(status)) if status else ["in_review", "new"]
        q = select(BreachRow).where(BreachRow.status.in_(statuses))
        if priority is not None:
            q = q.where(BreachRow.priority == priority)
        if kind is not None:
            q = q.where(BreachRow.kind == kind)
        if assignee is not None:
            q = q.where(BreachRow.assignee == assignee)
        total = session.scalar(select(func.count()).select_from(q.subquery()))
        rows = list(session.scalars(q.order_by(BreachRow.priority, BreachRow.first_seen_ms, BreachRow.start_ms,
                                               BreachRow.breach_id).limit(limit).offset(offset)))
        audit.append(session, action="breach.queue.read", actor=user, now_ms=clock(),
                     detail={"status": statuses, "priority": priority, "kind": kind, "limit": limit, "offset": offset,
                             "breach_ids": [b.breach_id for b in rows]})
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
def set_breach_status(breach_id: Annotated[str, Path(min_length=16, max_length=16, pattern="^[0-9a-f]{16}$")],
                      body: BreachStatusChange, session: SessionDep, user: CurrentUser, audit: AuditDep,
                      clock: ClockDep) -> QueueItem:
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

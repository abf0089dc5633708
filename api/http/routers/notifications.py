"""`GET /v1/notifications`: the outbox of priority 1 announcements, for
admins to see what was sent and what could not be (``dead``). Sending is
`api.service.notifications`, run by the stream service."""
from __future__ import annotations

import json
from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import select

from api.access.request_input import fmt_ts
from api.db.models import Notification
from api.http.deps import AuditDep, ClockDep, CurrentUser, SessionDep, authorize, commit
from api.http.guard import GuardedRoute

router = APIRouter(tags=["casework"], dependencies=[Depends(authorize)], route_class=GuardedRoute)


class NotificationPublic(BaseModel):
    id: int
    breach_id: str
    channel: str
    status: str
    attempts: int
    last_error: str | None
    created: str
    sent: str | None
    payload: dict


@router.get("/notifications", operation_id="list_notifications", response_model=list[NotificationPublic])
def get_notifications(session: SessionDep, user: CurrentUser, audit: AuditDep, clock: ClockDep,
                      status: Literal["pending", "sent", "dead"] | None = None) -> list[NotificationPublic]:
    """Notifications, newest first (at most 500); `status=dead` is the dead-letter list. Audited.

    Roles: admin.
    """
    q = select(Notification).order_by(Notification.id.desc()).limit(500)
    if status is not None:
        q = q.where(Notification.status == status)
    rows = list(session.scalars(q))
    audit.append(session, action="notification.list", actor=user, now_ms=clock(),
                 detail={"status": status, "ids": [n.id for n in rows]})
    out = [NotificationPublic(id=n.id, breach_id=n.breach_id, channel=n.channel, status=n.status,
                              attempts=n.attempts, last_error=n.last_error, created=fmt_ts(n.created_ms),
                              sent=fmt_ts(n.sent_ms), payload=json.loads(n.payload_json)) for n in rows]
    commit(session, audit)
    return out

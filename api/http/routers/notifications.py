"""`GET /v1/notifications`: the outbox of priority 1 announcements, for
admins to see what was sent and what could not be (``dead``). Sending is
`api.service.notifications`, run by the stream service."""
from __future__ import annotations

import json
from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from api.access.request_input import fmt_ts
from api.http.deps import AuditDep, ClockDep, CurrentUser, SessionDep, authorize, commit
from api.http.guard import GuardedRoute
from api.service.notifications import read_notifications

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
    rows = read_notifications(session, audit, user, status=status, now_ms=clock())
    out = [NotificationPublic(id=n.id, breach_id=n.breach_id, channel=n.channel, status=n.status,
                              attempts=n.attempts, last_error=n.last_error, created=fmt_ts(n.created_ms),
                              sent=fmt_ts(n.sent_ms), payload=json.loads(n.payload_json)) for n in rows]
    commit(session, audit)
    return out

"""`/admin/notifications`: the outbox of urgent announcements, for the
admin to see what was sent and what could not be (``dead``, after the
retries). The console's side of ``list_notifications``
(`read_notifications`, audited ``notification.list`` with the ids shown).
"""
from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from api.audit.log import commit_with_checkpoint
from api.service.notifications import read_notifications
from api.web.auth import DbSession, console_audit, now_ms, require
from api.web.sessions import SignedIn
from api.web.templating import render

__all__ = ["router", "SHOWN"]

router = APIRouter(include_in_schema=False)
#: The newest notifications the page lists.
SHOWN = 200


@router.get("/admin/notifications")
def notifications(request: Request, session: DbSession,
                  me: Annotated[SignedIn, Depends(require("list_notifications"))],
                  status: Annotated[Literal["", "pending", "sent", "dead"], Query()] = "") -> Response:
    rows = read_notifications(session, console_audit(request), me.user, status=status or None,
                              now_ms=now_ms(request), limit=SHOWN)
    commit_with_checkpoint(session, console_audit(request))
    shown = [{"n": n, "payload": json.loads(n.payload_json)} for n in rows]
    return render(request, "admin/notifications.html", {"rows": shown, "status": status, "shown": SHOWN})

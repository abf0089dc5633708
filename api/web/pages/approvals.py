"""`/approvals`: the approver's inbox, the pending access requests, urgent
first, then by the time a response is due (none last), then oldest first
(`api.access.requests.list_requests`, audited ``request.list`` like the API's
list, channel console). Each links to its page, where the decision is made;
a request the approver made themselves is marked and cannot be decided there.
Only roles that may decide (``decide_access_request``) open it: anyone else
gets the 403 page."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from api.access.requests import list_requests, needs_identity_check, own_request
from api.audit.log import commit_with_checkpoint
from api.web.auth import DbSession, console_audit, now_ms, require
from api.web.pages.requests import GROUND_LABELS, people
from api.web.sessions import SignedIn
from api.web.templating import render

__all__ = ["router", "INBOX_SIZE"]

router = APIRouter(include_in_schema=False)
INBOX_SIZE = 500


@router.get("/approvals")
def approvals_page(request: Request, session: DbSession,
                   me: Annotated[SignedIn, Depends(require("decide_access_request"))]) -> Response:
    audit = console_audit(request)
    rows = list_requests(session, audit, me.user, now_ms=now_ms(request), status="pending", limit=INBOX_SIZE,
                         by_urgency=True)
    commit_with_checkpoint(session, audit)
    users = people(session, [r.requester_id for r in rows])
    items = [{"r": r, "own": own_request(session, r, me.user), "identity": needs_identity_check(session, r)}
             for r in rows]
    return render(request, "requests/approvals.html", {"items": items, "users": users,
                                                       "ground_labels": GROUND_LABELS})

"""`/casework`: what the Hub owes wearers today, across the caseload: the
mitigations awaiting a decision (overdue first, with their deadline) and
the reviews due within a fortnight (overdue first, with their owner). Each
row leads to the wearer's casework page.

Both lists are API reads, made through the same service functions with the
same audit entries (channel console): ``mitigation.list``
(`read_mitigations`, ``GET /v1/mitigations?status=pending``) and
``review.list`` (`read_reviews`, ``GET /v1/reviews/due?within_days=14``).
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from api.audit.log import commit_with_checkpoint
from api.service.mitigations import read_mitigations
from api.service.reviews import read_reviews
from api.web.auth import DbSession, console_audit, now_ms, require
from api.web.sessions import SignedIn
from api.web.templating import render
from trails.timestamps import DAY_MS

__all__ = ["router", "DUE_WITHIN_DAYS"]

router = APIRouter(include_in_schema=False)
#: Reviews listed: due within this many days (overdue included).
DUE_WITHIN_DAYS = 14


@router.get("/casework")
def casework(request: Request, session: DbSession,
             me: Annotated[SignedIn, Depends(require("reviews_due"))]) -> Response:
    audit, when = console_audit(request), now_ms(request)
    pending = read_mitigations(session, audit, me.user, now_ms=when, status="pending")
    reviews = read_reviews(session, audit, me.user, now_ms=when,
                           every_days=request.app.state.settings.review_every_days, within_days=DUE_WITHIN_DAYS)
    commit_with_checkpoint(session, audit)
    return render(request, "casework/casework.html", {
        "mitigations": [{"m": m, "overdue": m.due_ms < when} for m in pending],
        "reviews": [{"d": d, "overdue": d.due_ms < when,
                     "days": max(0, -(-(when - d.due_ms) // DAY_MS))} for d in reviews],
        "within_days": DUE_WITHIN_DAYS})

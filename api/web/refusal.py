"""A call on an access request that the service refused, answered as the API
answers it: one ``access.refused`` audit entry (channel console) with the
operation, target, status and reason, and for an external requester the
same generic refusal with its audit reference (`api.audit.refusals`), so the
console tells them no more than the API would about who is monitored."""
from __future__ import annotations

from fastapi import Request
from sqlalchemy.orm import Session

from api.access.requests import RequestError
from api.audit.refusals import REFUSED, masked_for_requester, record_refusal
from api.web.auth import ConsoleRefused, console_audit, now_ms
from api.web.sessions import SignedIn

__all__ = ["audit_refusal", "refusal", "release", "TITLES"]

#: The error page's title per status.
TITLES = {403: "You cannot do this", 404: "No such request", 409: "This cannot be done now",
          410: "This approval has expired", 422: "This cannot be done as asked"}


def release(session: Session, me: SignedIn) -> None:
    """End `session`'s failed transaction before a refusal is recorded in a
    session of its own (the database has one writer, and every transaction
    holds it). The signed-in user is taken out first: a rollback would expire
    it, and reading it again would open a transaction that blocks the record."""
    if me.user in session:
        session.expunge(me.user)
    session.rollback()


def audit_refusal(request: Request, me: SignedIn, op: str, status: int, reason: str, *,
                  subject_id: str | None = None, params: dict | None = None) -> str | None:
    """Write the ``access.refused`` entry; the message an external requester
    gets instead of `reason` when the API would mask it, else None."""
    target = {"params": {k: str(v) for k, v in (params or {}).items()}, "subject_id": subject_id}
    ref = record_refusal(console_audit(request), request.app.state.session_factory, user=me.user, operation=op,
                         target=target, status=status, reason=reason, now_ms=now_ms(request))
    if masked_for_requester(me.user.role, op, status):
        text = REFUSED.format(ref=f"A-{ref}" if ref is not None else "(not recorded)")
        return text[0].upper() + text[1:] + "."
    return None


def refusal(request: Request, me: SignedIn, op: str, exc: RequestError, *, subject_id: str | None = None,
            params: dict | None = None) -> ConsoleRefused:
    """The error page for a refused call, after auditing it (`audit_refusal`)."""
    masked = audit_refusal(request, me, op, exc.status, str(exc), subject_id=subject_id, params=params)
    if masked is not None:
        return ConsoleRefused(403, "This request was refused", masked)
    return ConsoleRefused(exc.status, TITLES.get(exc.status, "This cannot be done"), str(exc))

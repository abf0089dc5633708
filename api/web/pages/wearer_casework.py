"""`/subjects/{subject_id}/casework`: one wearer's casework on one page, for
the caseworker who owns it: the escalation ladder's proposal and the steps
taken (with their letters), the wearer's mitigations and the decisions on
them, the next review pre-filled with its summary, welfare notes, and the
owner and the language letters are written in.

Every section is an API read, made through the same service function and
audited with the same action and fields (channel console):
``escalation.read`` (`read_escalation`), ``mitigation.list``
(`read_mitigations`), ``review.summary`` (`read_review_summary`),
``wearer.welfare_notes.read`` (`read_welfare_notes`) and, for the
mitigation form's choice of records, ``breach.queue.read`` (`read_queue`).
The forms are `api.web.pages.casework_forms`. A role without
``get_escalation`` gets the 403 page.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.access.permissions import is_allowed
from api.audit.log import commit_with_checkpoint
from api.db.models import AssignmentRow, User, Wearer
from api.service.breach_queue import QueueFilter, read_queue
from api.service.escalation import read_escalation
from api.service.ladder import LadderError, load_ladder
from api.service.mitigations import CHANNELS, breaches_of, read_mitigations
from api.service.reviews import OUTCOMES, ReviewError, read_review_summary
from api.service.wearer_details import read_welfare_notes
from api.web.auth import DbSession, console_audit, now_ms, require
from api.web.sessions import SignedIn
from api.web.templating import render

__all__ = ["router", "casework_page", "SAVED"]

router = APIRouter(include_in_schema=False)
SubjectId = Annotated[str, Path(min_length=1, max_length=200)]

#: The wearer's records the mitigation form offers, newest first.
RECORDS_OFFERED = 100
#: What the banner says after each form (``?saved=``).
SAVED = {"escalation": "The escalation decision is recorded.", "mitigation": "The mitigation is recorded.",
         "decision": "The decision on the mitigation is recorded.", "review": "The review is recorded.",
         "note": "The welfare note is recorded.", "language": "The wearer's language is recorded.",
         "owner": "The wearer's owner is recorded."}
OUTCOME_LABELS = {"continue": "Continue monitoring", "vary_conditions": "Vary the conditions",
                  "end_monitoring": "End monitoring now"}


def _escalation(request: Request, session: Session, me: SignedIn, subject_id: str, when: int) -> dict:
    try:
        ladder = load_ladder(request.app.state.settings.home)
    except LadderError as exc:
        return {"ladder_error": str(exc), "proposal": None, "decisions": [], "steps": []}
    proposal, decisions = read_escalation(session, console_audit(request), me.user, ladder, subject_id, now_ms=when)
    steps = [s for s, _ in ladder.steps] + [s for s, _, _ in ladder.immediate if s not in {t for t, _ in ladder.steps}]
    return {"ladder_error": None, "proposal": proposal, "decisions": decisions, "steps": steps,
            "ladder_version": ladder.version}


def _mitigations(request: Request, session: Session, me: SignedIn, subject_id: str, when: int) -> dict:
    audit = console_audit(request)
    rows = read_mitigations(session, audit, me.user, now_ms=when, subject_id=subject_id)
    offered = None
    if is_allowed("record_mitigation", me.user.role):
        offered = read_queue(session, audit, me.user, QueueFilter(
            statuses=("new", "in_review", "actioned"), kind="breach", subject_id=subject_id,
            limit=RECORDS_OFFERED), now_ms=when).rows
    return {"mitigations": [{"m": m, "breach_ids": breaches_of(session, m.id), "overdue": m.status == "pending"
                             and m.due_ms < when} for m in rows],
            "offered": offered, "channels": CHANNELS}


def _review(request: Request, session: Session, me: SignedIn, subject_id: str, when: int) -> dict:
    settings = request.app.state.settings
    try:
        summary, due = read_review_summary(session, console_audit(request), me.user, settings.home, subject_id,
                                           now_ms=when, every_days=settings.review_every_days)
    except ReviewError as exc:
        return {"review": None, "review_unavailable": str(exc)}
    return {"review": {"summary": summary, "due_ms": due.due_ms, "since_ms": due.since_ms,
                       "overdue": due.due_ms < when}, "review_unavailable": None}


def _people(session: Session, subject_id: str) -> dict:
    """The wearer's owner and language, and the caseworkers an admin may make owner."""
    row = session.get(Wearer, subject_id)
    owner = session.get(User, row.owner_id) if row is not None and row.owner_id is not None else None
    caseworkers = list(session.scalars(select(User.name).where(User.role == "caseworker", User.revoked_ms.is_(None))
                                       .order_by(User.name)))
    names = dict(session.execute(select(User.id, User.name)).all())
    return {"owner": owner.name if owner else None, "language": row.language if row else None,
            "caseworkers": caseworkers, "user_names": names}


def casework_page(request: Request, session: Session, me: SignedIn, subject_id: str, *, saved: str = "",
                  error: tuple[str, str] | None = None, status_code: int = 200) -> Response:
    """The page (every section read and audited, then committed); `error` (form, message) shows a refused
    submission at its form."""
    when = now_ms(request)
    if session.scalars(select(AssignmentRow.id).where(AssignmentRow.subject_id == subject_id)).first() is None:
        return render(request, "error.html", {"title": "No such wearer",
                                              "message": f"No assignment names wearer {subject_id!r}."},
                      status_code=404)
    context = {"subject_id": subject_id, "now_ms": when, "saved": SAVED.get(saved), "error": error,
               "outcomes": OUTCOMES, "outcome_labels": OUTCOME_LABELS}
    context |= _escalation(request, session, me, subject_id, when)
    context |= _mitigations(request, session, me, subject_id, when)
    context |= _review(request, session, me, subject_id, when)
    notes = read_welfare_notes(session, console_audit(request), me.user, subject_id, now_ms=when)
    context |= {"notes": notes} | _people(session, subject_id)
    commit_with_checkpoint(session, console_audit(request))
    return render(request, "casework/wearer.html", context, status_code=status_code)


@router.get("/subjects/{subject_id}/casework")
def wearer_casework(request: Request, subject_id: SubjectId, session: DbSession,
                    me: Annotated[SignedIn, Depends(require("get_escalation"))],
                    saved: Annotated[str, Query(max_length=20)] = "") -> Response:
    return casework_page(request, session, me, subject_id, saved=saved)

"""`PUT /v1/subjects/{id}/language` and `/v1/subjects/{id}/welfare-notes`:
what staff record about a wearer besides assignments. Rules and audit
entries: `api.service.wearer_details`."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from api.access.request_input import In, fmt_ts
from api.db.models import User, WelfareNote
from api.http.deps import AuditDep, ClockDep, CurrentUser, SessionDep, authorize, commit
from api.http.errors import Unprocessable
from api.http.guard import GuardedRoute
from api.service.wearer_details import NOTE_MAX, WearerError, add_welfare_note, read_welfare_notes, set_language

router = APIRouter(tags=["casework"], dependencies=[Depends(authorize)], route_class=GuardedRoute)

SubjectId = Annotated[str, Path(min_length=1, max_length=200)]


class LanguageIn(In):
    language: str | None = Field(None, max_length=35, description="a BCP 47 tag such as cy, pl or pt-BR; null: "
                                                                   "English")


class NoteIn(In):
    text: str = Field(min_length=1, max_length=NOTE_MAX)


class NotePublic(BaseModel):
    id: int
    subject_id: str
    text: str
    recorded_by: str
    recorded: str


def _note(session, n: WelfareNote) -> NotePublic:
    by = session.get(User, n.recorded_by)
    return NotePublic(id=n.id, subject_id=n.subject_id, text=n.text, recorded_by=by.name if by else str(n.recorded_by),
                      recorded=fmt_ts(n.recorded_ms))


@router.put("/subjects/{subject_id}/language", operation_id="set_language")
def put_language(subject_id: SubjectId, body: LanguageIn, session: SessionDep, user: CurrentUser, audit: AuditDep,
                 clock: ClockDep) -> dict:
    """Record the language the wearer reads: letters use a template in it where one exists
    (HOME/letters/<language>/<step>.txt, then the package's), English otherwise.

    Roles: caseworker, admin. 422 for a malformed tag or a wearer with no assignment.
    """
    try:
        set_language(session, audit, user, subject_id, body.language, now_ms=clock())
    except WearerError as exc:
        raise Unprocessable(str(exc)) from None
    commit(session, audit)
    return {"subject_id": subject_id, "language": body.language}


@router.post("/subjects/{subject_id}/welfare-notes", operation_id="record_welfare_note", response_model=NotePublic,
             status_code=201)
def post_note(subject_id: SubjectId, body: NoteIn, session: SessionDep, user: CurrentUser, audit: AuditDep,
              clock: ClockDep) -> NotePublic:
    """Record a welfare note about the wearer; the next review's summary lists the notes of its period.

    Roles: caseworker. 422 for a wearer with no assignment.
    """
    try:
        row = add_welfare_note(session, audit, user, subject_id, body.text, now_ms=clock())
    except WearerError as exc:
        raise Unprocessable(str(exc)) from None
    out = _note(session, row)
    commit(session, audit)
    return out


@router.get("/subjects/{subject_id}/welfare-notes", operation_id="list_welfare_notes",
            response_model=list[NotePublic])
def get_notes(subject_id: SubjectId, session: SessionDep, user: CurrentUser, audit: AuditDep,
              clock: ClockDep) -> list[NotePublic]:
    """The wearer's welfare notes, oldest first; the read is audited (ids only).

    Roles: caseworker, approver, auditor, admin.
    """
    rows = read_welfare_notes(session, audit, user, subject_id, now_ms=clock())
    out = [_note(session, n) for n in rows]
    commit(session, audit)
    return out

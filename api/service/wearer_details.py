"""What staff record about a wearer beyond their assignments: the language
letters are written in, and welfare notes (health, housing, family: what a
review must weigh besides the breaches). Both are casework, kept in
business tables; audit entries carry the language tag and the notes'
SHA-256, never a note's text. The caller commits each change with its
audit entry.
"""
from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db.models import AssignmentRow, User, Wearer, WelfareNote
from api.service.casework_errors import CaseworkError
from api.service.letters import LANGUAGE_TAG

__all__ = ["WearerError", "set_language", "add_welfare_note", "welfare_notes", "read_welfare_notes", "NOTE_MAX"]

#: The longest welfare note, in characters.
NOTE_MAX = 10_000


class WearerError(CaseworkError):
    """A wearer detail that cannot be recorded (422)."""


def _known(session: Session, subject_id: str) -> None:
    if session.scalars(select(AssignmentRow.id).where(AssignmentRow.subject_id == subject_id)).first() is None:
        raise WearerError(f"wearer {subject_id!r} has no assignment")


def set_language(session: Session, audit, user: User, subject_id: str, language: str | None, *,
                 now_ms: int) -> Wearer:
    """Record the wearer's language (a BCP 47 tag such as ``cy`` or ``pt-BR``; None: English).
    Audited ``wearer.language``."""
    if language is not None and not LANGUAGE_TAG.match(language):
        raise WearerError(f"language must be a language tag such as cy, pl or pt-BR, not {language[:40]!r}")
    _known(session, subject_id)
    row = session.get(Wearer, subject_id) or Wearer(subject_id=subject_id)
    row.language = language
    session.add(row)
    audit.append(session, action="wearer.language", actor=user, subject_id=subject_id, now_ms=now_ms,
                 detail={"language": language})
    return row


def add_welfare_note(session: Session, audit, user: User, subject_id: str, text: str, *,
                     now_ms: int) -> WelfareNote:
    """Record a welfare note about the wearer. Audited ``wearer.welfare_note`` with the text's SHA-256."""
    text = (text or "").strip()
    if not text or len(text) > NOTE_MAX:
        raise WearerError(f"a welfare note is 1..{NOTE_MAX} characters")
    _known(session, subject_id)
    row = WelfareNote(subject_id=subject_id, text=text, recorded_by=user.id, recorded_ms=now_ms)
    session.add(row)
    session.flush()
    audit.append(session, action="wearer.welfare_note", actor=user, subject_id=subject_id, now_ms=now_ms,
                 justification_ref=f"welfare_note:{row.id}",
                 detail={"note_id": row.id, "text_sha256": hashlib.sha256(text.encode()).hexdigest()})
    return row


def welfare_notes(session: Session, subject_id: str, *, start_ms: int | None = None,
                  end_ms: int | None = None) -> list[WelfareNote]:
    """The wearer's notes recorded in [start_ms, end_ms), oldest first (not audited here)."""
    q = select(WelfareNote).where(WelfareNote.subject_id == subject_id)
    if start_ms is not None:
        q = q.where(WelfareNote.recorded_ms >= start_ms)
    if end_ms is not None:
        q = q.where(WelfareNote.recorded_ms < end_ms)
    return list(session.scalars(q.order_by(WelfareNote.recorded_ms, WelfareNote.id)))


def read_welfare_notes(session: Session, audit, user: User, subject_id: str, *, now_ms: int) -> list[WelfareNote]:
    """All the wearer's notes, oldest first, as staff read them (API and console): audited
    ``wearer.welfare_notes.read`` with the ids."""
    rows = welfare_notes(session, subject_id)
    audit.append(session, action="wearer.welfare_notes.read", actor=user, subject_id=subject_id, now_ms=now_ms,
                 detail={"note_ids": [n.id for n in rows]})
    return rows

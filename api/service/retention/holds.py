"""Legal holds: a hold (wearer, period, data classes, reason, owner, review
date) suspends the erasure of what it covers, however due, until it is
lifted. Litigation, an inquiry or a complaint can need data a rule would
erase; the hold says so on the record, names who answers for it, and comes
up for review. Reasons stay in the business table; audit entries hold their
SHA-256. The caller commits each change with its audit entry.
"""
from __future__ import annotations

import hashlib
import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db.models import AssignmentRow, LegalHold, User
from api.service.casework_errors import CaseworkConflict, CaseworkError, CaseworkNotFound
from api.service.retention.rules import CLASSES
from trails.timestamps import format_ms

__all__ = ["HoldError", "create_hold", "list_holds", "review_hold", "lift_hold", "held_periods", "hold_classes"]


class HoldError(CaseworkError):
    """A hold that cannot be placed or changed as asked (422)."""


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def hold_classes(h: LegalHold) -> list[str]:
    return json.loads(h.classes_json)


def create_hold(session: Session, audit, user: User, *, subject_id: str, start_ms: int, end_ms: int,
                classes: list[str], reason: str, owner_name: str, review_ms: int, now_ms: int) -> LegalHold:
    """Place a hold. Audited ``retention.hold``."""
    if end_ms <= start_ms:
        raise HoldError("the held period's end must be after its start")
    bad = sorted(set(classes) - set(CLASSES))
    if not classes or bad:
        raise HoldError(f"classes must be some of {', '.join(CLASSES)}" + (f"; not {', '.join(bad)}" if bad else ""))
    if len((reason or "").strip()) < 10:
        raise HoldError("say why the data must be kept (at least 10 characters)")
    if review_ms <= now_ms:
        raise HoldError("the review date must be in the future")
    owner = session.scalars(select(User).where(User.name == owner_name, User.revoked_ms.is_(None))).first()
    if owner is None or owner.role in ("requester", "feed"):
        raise HoldError(f"{owner_name!r} is not an active member of staff")
    if session.scalars(select(AssignmentRow.id).where(AssignmentRow.subject_id == subject_id)).first() is None:
        raise HoldError(f"wearer {subject_id!r} has no assignment")
    row = LegalHold(subject_id=subject_id, start_ms=start_ms, end_ms=end_ms,
                    classes_json=json.dumps(sorted(set(classes), key=CLASSES.index)), reason=reason.strip(),
                    owner_id=owner.id, review_ms=review_ms, created_by=user.id, created_ms=now_ms)
    session.add(row)
    session.flush()
    audit.append(session, action="retention.hold", actor=user, subject_id=subject_id, now_ms=now_ms,
                 justification_ref=f"hold:{row.id}",
                 detail={"hold_id": row.id, "from": format_ms(start_ms), "to": format_ms(end_ms),
                         "classes": hold_classes(row), "owner_id": owner.id, "review": format_ms(review_ms),
                         "reason_sha256": _sha(row.reason)})
    return row


def _get_open(session: Session, hold_id: int) -> LegalHold:
    row = session.get(LegalHold, hold_id)
    if row is None:
        raise CaseworkNotFound(f"legal hold {hold_id} not found")
    if row.lifted_ms is not None:
        raise CaseworkConflict(f"legal hold {hold_id} was lifted at {format_ms(row.lifted_ms)}")
    return row


def review_hold(session: Session, audit, user: User, hold_id: int, *, next_review_ms: int, note: str,
                now_ms: int) -> LegalHold:
    """Record that the hold was reviewed and is still needed, until the next review. Audited
    ``retention.hold_review``."""
    row = _get_open(session, hold_id)
    if next_review_ms <= now_ms:
        raise HoldError("the next review date must be in the future")
    if len((note or "").strip()) < 10:
        raise HoldError("say why the hold is still needed (at least 10 characters)")
    row.review_ms = next_review_ms
    audit.append(session, action="retention.hold_review", actor=user, subject_id=row.subject_id, now_ms=now_ms,
                 justification_ref=f"hold:{row.id}",
                 detail={"hold_id": row.id, "next_review": format_ms(next_review_ms), "note_sha256": _sha(note)})
    return row


def lift_hold(session: Session, audit, user: User, hold_id: int, *, reason: str, now_ms: int) -> LegalHold:
    """Lift the hold: what it covered is erased at the next pass if a rule says so. Audited
    ``retention.hold_lift``."""
    row = _get_open(session, hold_id)
    if len((reason or "").strip()) < 10:
        raise HoldError("say why the hold is lifted (at least 10 characters)")
    row.lifted_by, row.lifted_ms, row.lift_reason = user.id, now_ms, reason.strip()
    audit.append(session, action="retention.hold_lift", actor=user, subject_id=row.subject_id, now_ms=now_ms,
                 justification_ref=f"hold:{row.id}", detail={"hold_id": row.id, "reason_sha256": _sha(reason)})
    return row


def list_holds(session: Session, *, subject_id: str | None = None, active: bool | None = None,
               review_due_at: int | None = None) -> list[LegalHold]:
    """Holds, soonest review first; `active` True: not lifted; `review_due_at`: open ones due for review then."""
    q = select(LegalHold)
    if subject_id is not None:
        q = q.where(LegalHold.subject_id == subject_id)
    if active is True or review_due_at is not None:
        q = q.where(LegalHold.lifted_ms.is_(None))
    elif active is False:
        q = q.where(LegalHold.lifted_ms.is_not(None))
    if review_due_at is not None:
        q = q.where(LegalHold.review_ms <= review_due_at)
    return list(session.scalars(q.order_by(LegalHold.review_ms, LegalHold.id)))


def held_periods(session: Session, subject_id: str, data_class: str) -> list[tuple[int, int]]:
    """The periods of the wearer's `data_class` that open holds keep, merged and sorted."""
    spans = sorted((h.start_ms, h.end_ms) for h in list_holds(session, subject_id=subject_id, active=True)
                   if data_class in hold_classes(h))
    merged: list[tuple[int, int]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged

"""The breach queue (the Hub's work list): reading it, one record with its
history, and moving a record along it. The API (`api.http.routers.breaches`)
and the console (`api.web.pages.queue`) both call these, so a read or a
change is the same query, the same rules and the same audit entry whichever
way it came in (only the entry's ``channel`` differs: the caller passes the
audit log as its way in sees it, `api.audit.log.AuditLog.via`).

Statuses: ``new``, ``in_review``, ``actioned``, and ``withdrawn`` (set only
by detection, with a reason, when data received later removes the record;
it is never deleted, and people cannot change it). A status change keeps its
note in ``breach_events``; the audit log holds only the note's SHA-256.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from api.db.models import BreachEvent, BreachRow, User

__all__ = ["QueueFilter", "QueuePage", "QueueError", "UnknownBreach", "WithdrawnBreach", "UnknownAssignee",
           "DEFAULT_STATUSES", "PEOPLE_STATUSES", "UNCHANGED", "read_queue", "priority_counts", "read_breach",
           "change_status"]

#: What the queue shows when no status is asked for: the records still to work.
DEFAULT_STATUSES: tuple[str, ...] = ("in_review", "new")
#: The statuses a person may move a record to (``withdrawn`` is detection's).
PEOPLE_STATUSES: tuple[str, ...] = ("new", "in_review", "actioned")


class _Unchanged:
    def __repr__(self) -> str:
        return "UNCHANGED"


#: `change_status(assignee=UNCHANGED)`: leave the assignment as it is.
UNCHANGED = _Unchanged()


class QueueError(Exception):
    """A queue change that cannot be made; the message names the record."""


class UnknownBreach(QueueError):
    """No record with that id."""


class WithdrawnBreach(QueueError):
    """The record was withdrawn by detection: nobody changes it."""


class UnknownAssignee(QueueError):
    """The assignee is not an active user."""


@dataclass(frozen=True)
class QueueFilter:
    """What the queue is narrowed to; every filter given must hold.

    statuses: empty means `DEFAULT_STATUSES`. types: empty means every type."""

    statuses: tuple[str, ...] = ()
    priority: int | None = None
    kind: str | None = None
    types: tuple[str, ...] = ()
    subject_id: str | None = None
    assignee: str | None = None
    limit: int = 100
    offset: int = 0

    @property
    def status_list(self) -> list[str]:
        return sorted(set(self.statuses)) if self.statuses else list(DEFAULT_STATUSES)

    @property
    def type_list(self) -> list[str] | None:
        return sorted(set(self.types)) if self.types else None


@dataclass(frozen=True)
class QueuePage:
    rows: list[BreachRow]
    total: int
    filters: QueueFilter = field(default_factory=QueueFilter)


def _where(f: QueueFilter, *, with_priority: bool = True) -> Select:
    q = select(BreachRow).where(BreachRow.status.in_(f.status_list))
    if with_priority and f.priority is not None:
        q = q.where(BreachRow.priority == f.priority)
    if f.kind is not None:
        q = q.where(BreachRow.kind == f.kind)
    if f.type_list is not None:
        q = q.where(BreachRow.type.in_(f.type_list))
    if f.subject_id is not None:
        q = q.where(BreachRow.subject_id == f.subject_id)
    if f.assignee is not None:
        q = q.where(BreachRow.assignee == f.assignee)
    return q


def read_queue(session: Session, audit, user: User, f: QueueFilter, *, now_ms: int) -> QueuePage:
    """One page of the queue: by priority (1 first), then oldest first; audited
    as ``breach.queue.read`` (the filters and the ids shown). The caller commits."""
    q = _where(f)
    total = session.scalar(select(func.count()).select_from(q.subquery()))
    rows = list(session.scalars(q.order_by(BreachRow.priority, BreachRow.first_seen_ms, BreachRow.start_ms,
                                           BreachRow.breach_id).limit(f.limit).offset(f.offset)))
    audit.append(session, action="breach.queue.read", actor=user, subject_id=f.subject_id, now_ms=now_ms,
                 detail={"status": f.status_list, "priority": f.priority, "kind": f.kind, "type": f.type_list,
                         "limit": f.limit, "offset": f.offset, "breach_ids": [b.breach_id for b in rows]})
    return QueuePage(rows=rows, total=int(total or 0), filters=f)


def priority_counts(session: Session, f: QueueFilter) -> dict[int, int]:
    """How many records match `f` at each priority (1-4), whatever its own
    priority filter says: the counts a queue page heads itself with. Numbers
    only, nothing about a wearer, so not audited on their own."""
    q = _where(f, with_priority=False).subquery()
    got = dict(session.execute(select(q.c.priority, func.count()).group_by(q.c.priority)).all())
    return {p: int(got.get(p, 0)) for p in (1, 2, 3, 4)}


def read_breach(session: Session, audit, user: User, breach_id: str, *,
                now_ms: int) -> tuple[BreachRow, list[tuple[BreachEvent, str | None]]]:
    """One record and its history (each change with the name of who made it),
    oldest change first; audited as ``breach.read``. The caller commits.

    Raises `UnknownBreach`."""
    b = session.get(BreachRow, breach_id)
    if b is None:
        raise UnknownBreach(f"breach {breach_id} not found")
    events = [(e, name) for e, name in session.execute(
        select(BreachEvent, User.name).outerjoin(User, User.id == BreachEvent.user_id)
        .where(BreachEvent.breach_id == breach_id).order_by(BreachEvent.ts_ms, BreachEvent.id)).all()]
    audit.append(session, action="breach.read", actor=user, subject_id=b.subject_id,
                 justification_ref=f"breach:{breach_id}", now_ms=now_ms,
                 detail={"breach_id": breach_id, "event_ids": [e.id for e, _ in events]})
    return b, events


def change_status(session: Session, audit, user: User, breach_id: str, *, status: str, note: str | None,
                  assignee: str | None | _Unchanged = UNCHANGED, now_ms: int) -> BreachRow:
    """Move a record to `status` with an optional note and, unless `assignee`
    is `UNCHANGED`, (un)assign it (the name of an active user, or None).
    Audited as ``breach.status`` (before and after; the note only as its
    SHA-256). The caller commits.

    Raises `UnknownBreach`, `WithdrawnBreach`, `UnknownAssignee`; a status
    people may not set (`PEOPLE_STATUSES`) is a ValueError (the ways in
    validate it first)."""
    b = session.get(BreachRow, breach_id)
    if b is None:
        raise UnknownBreach(f"breach {breach_id} not found")
    if b.status == "withdrawn":
        raise WithdrawnBreach(f"breach {breach_id} was withdrawn by detection ({b.withdrawn_reason}); "
                              f"it cannot be changed")
    if status not in PEOPLE_STATUSES:
        raise ValueError(f"status must be one of {', '.join(PEOPLE_STATUSES)}, got {status!r}")
    new_assignee = b.assignee
    if not isinstance(assignee, _Unchanged):
        if assignee is not None and session.scalar(select(func.count()).select_from(User).where(
                User.name == assignee, User.revoked_ms.is_(None))) == 0:
            raise UnknownAssignee(f"assignee {assignee!r} is not an active user")
        new_assignee = assignee
    before = {"status": b.status, "assignee": b.assignee}
    event = BreachEvent(breach_id=breach_id, ts_ms=now_ms, user_id=user.id, from_status=b.status, to_status=status,
                        assignee=new_assignee, note=note)
    session.add(event)
    b.status, b.status_ms, b.assignee = status, now_ms, new_assignee
    session.flush()
    audit.append(session, action="breach.status", actor=user, subject_id=b.subject_id,
                 justification_ref=f"breach:{breach_id}", now_ms=now_ms,
                 detail={"breach_id": breach_id, "event_id": event.id, "from": before,
                         "to": {"status": b.status, "assignee": b.assignee},
                         "note_sha256": None if note is None else hashlib.sha256(note.encode()).hexdigest()})
    return b

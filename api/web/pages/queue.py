"""`/queue`: the breach queue in the console, the same work list as
`GET /v1/breaches/queue` (`api.service.breach_queue`: same query, same
``breach.queue.read`` audit entry, channel console).

The filters are a GET form (works without JavaScript): priority, type,
status (open, i.e. new and in review, by default; ``withdrawn`` lists the
records detection withdrew, with the reason), assignee, wearer; pages of
`PAGE_SIZE`. A value the queue does not know, or a parameter it does not
take, is a 400 page naming it, never ignored. "Assign to me" and a status
change with a note are POST forms (``set_breach_status``, audited as
``breach.status``): without JavaScript the browser posts and is redirected
back to the same view; with htmx only the record's row is swapped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from api.access.permissions import is_allowed
from api.audit.log import commit_with_checkpoint
from api.db.models import BreachRow
from api.service.devices import fault_marks
from api.service.breach_queue import (PEOPLE_STATUSES, UNCHANGED, QueueError, QueueFilter, UnknownAssignee,
                                      UnknownBreach, change_status, priority_counts, read_queue)
from api.web.auth import ConsoleRefused, DbSession, console_audit, now_ms, require, require_form
from api.web.paging import page_count, read_page, read_params, view_query
from api.web.sessions import SignedIn
from api.web.templating import render
from geofence.records import RECORD_TYPES

__all__ = ["router", "PAGE_SIZE", "QueueView", "parse_view"]

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
#: status filter value -> the statuses it lists ("open": what is still to work).
STATUS_CHOICES: dict[str, tuple[str, ...]] = {"open": ("in_review", "new"), "new": ("new",),
                                               "in_review": ("in_review",), "actioned": ("actioned",),
                                               "withdrawn": ("withdrawn",), "all": ("actioned", "in_review", "new")}
STATUS_LABELS = {"new": "New", "in_review": "In review", "actioned": "Actioned", "withdrawn": "Withdrawn"}
_PARAMS = ("priority", "type", "status", "assignee", "wearer", "page")
BreachId = Annotated[str, Path(min_length=16, max_length=16, pattern="^[0-9a-f]{16}$")]


@dataclass(frozen=True)
class QueueView:
    """The filters as the page's form holds them ('' for any)."""

    priority: str = ""
    type: str = ""
    status: str = "open"
    assignee: str = ""
    wearer: str = ""
    page: int = 1

    def to_filter(self) -> QueueFilter:
        return QueueFilter(statuses=STATUS_CHOICES[self.status], priority=int(self.priority) if self.priority else None,
                           types=(self.type,) if self.type else (), subject_id=self.wearer or None,
                           assignee=self.assignee or None, limit=PAGE_SIZE, offset=(self.page - 1) * PAGE_SIZE)

    def query(self, **change: object) -> str:
        """This view's query string, with `change` applied (defaults left out)."""
        return view_query({k: getattr(self, k) for k in _PARAMS} | change, {"page": 1, "status": "open"})


def parse_view(pairs: list[tuple[str, str]]) -> QueueView:
    """The view a query string asks for; `ConsoleRefused` (400) naming what is wrong."""
    got, problems = read_params(pairs, _PARAMS, "the queue")
    if got.get("priority", "") not in ("", "1", "2", "3", "4"):
        problems.append(f"priority must be 1, 2, 3 or 4, not {got['priority']!r}")
    if got.get("type", "") not in ("", *RECORD_TYPES):
        problems.append(f"there is no record type {got['type']!r}")
    if got.get("status", "open") not in STATUS_CHOICES:
        problems.append(f"there is no status {got['status']!r}")
    for name in ("assignee", "wearer"):
        if len(got.get(name, "")) > 200:
            problems.append(f"{name} is longer than 200 characters")
    page = read_page(got.get("page", ""), 100_000, problems)
    if problems:
        raise ConsoleRefused(400, "The queue cannot show that", "; ".join(problems)[:500])
    return QueueView(priority=got.get("priority", ""), type=got.get("type", ""),
                     status=got.get("status", "open") or "open", assignee=got.get("assignee", ""),
                     wearer=got.get("wearer", ""), page=page)


def _faults(session: Session, rows: list[BreachRow]) -> dict[str, str]:
    """breach_id -> equipment fault state for the rows inside a device fault (`api.service.devices`)."""
    return {bid: state for bid, (_, state) in fault_marks(session, rows).items()}


def _context(me: SignedIn) -> dict:
    return {"types": RECORD_TYPES, "status_labels": STATUS_LABELS, "people_statuses": PEOPLE_STATUSES,
            "can_change": is_allowed("set_breach_status", me.user.role)}


@router.get("/queue")
def queue_page(request: Request, session: DbSession,
               me: Annotated[SignedIn, Depends(require("breach_queue"))]) -> Response:
    view = parse_view(list(request.query_params.multi_items()))
    audit = console_audit(request)
    f = view.to_filter()
    page = read_queue(session, audit, me.user, f, now_ms=now_ms(request))
    counts = priority_counts(session, f)
    faults = _faults(session, page.rows)
    commit_with_checkpoint(session, audit)
    pages = page_count(page.total, PAGE_SIZE)
    return render(request, "queue/queue.html", {
        **_context(me), "view": view, "rows": page.rows, "total": page.total, "counts": counts, "pages": pages,
        "faults": faults,
        "back": view.query(), "status_choices": list(STATUS_CHOICES)})


def _back(back: str) -> str:
    """The queue view to return to, rebuilt from the known filters only."""
    try:
        view = parse_view(parse_qsl(back, keep_blank_values=True)[:20])
    except ConsoleRefused:
        view = QueueView()
    return view.query()


def _after_change(request: Request, me: SignedIn, b: BreachRow, back: str) -> Response:
    if request.headers.get("hx-request") == "true":  # htmx: only the row is swapped
        with request.app.state.session_factory() as session:
            faults = _faults(session, [b])
        return render(request, "queue/_row.html", {**_context(me), "b": b, "back": back, "changed": True,
                                                   "faults": faults,
                                                   "withdrawn_view": False})
    query = _back(back)
    return RedirectResponse(f"/queue{'?' + query if query else ''}#breach-{b.breach_id}", status_code=303)


def _refused(exc: QueueError) -> ConsoleRefused:
    if isinstance(exc, UnknownBreach):
        return ConsoleRefused(404, "No such record", str(exc))
    if isinstance(exc, UnknownAssignee):
        return ConsoleRefused(422, "That person cannot be assigned", str(exc))
    return ConsoleRefused(409, "This record cannot be changed", str(exc))


def assign_record(request: Request, session: Session, me: SignedIn, breach_id: str) -> BreachRow:
    """Assign the record to the signed-in caseworker, its status unchanged, and commit (the queue's and
    the breach page's "assign to me")."""
    audit = console_audit(request)
    current = session.get(BreachRow, breach_id)
    try:
        if current is None:
            raise UnknownBreach(f"breach {breach_id} not found")
        b = change_status(session, audit, me.user, breach_id, status=current.status, note=None,
                          assignee=me.user.name, now_ms=now_ms(request))
    except QueueError as exc:
        raise _refused(exc) from None
    commit_with_checkpoint(session, audit)
    return b


def move_record(request: Request, session: Session, me: SignedIn, breach_id: str, status: str,
                note: str) -> BreachRow:
    """Move the record to `status` with an optional note (kept in its history), and commit."""
    if status not in PEOPLE_STATUSES:
        raise ConsoleRefused(400, "That status does not exist", f"status must be one of "
                                                                 f"{', '.join(PEOPLE_STATUSES)}, not {status[:40]!r}")
    audit = console_audit(request)
    try:
        b = change_status(session, audit, me.user, breach_id, status=status, note=note.strip() or None,
                          assignee=UNCHANGED, now_ms=now_ms(request))
    except QueueError as exc:
        raise _refused(exc) from None
    commit_with_checkpoint(session, audit)
    return b


@router.post("/queue/{breach_id}/assign")
def assign_to_me(request: Request, breach_id: BreachId, session: DbSession,
                 me: Annotated[SignedIn, Depends(require_form("set_breach_status"))],
                 back: Annotated[str, Form(max_length=2000)] = "") -> Response:
    """Assign the record to the signed-in caseworker, its status unchanged."""
    return _after_change(request, me, assign_record(request, session, me, breach_id), back)


@router.post("/queue/{breach_id}/status")
def set_status(request: Request, breach_id: BreachId, session: DbSession,
               me: Annotated[SignedIn, Depends(require_form("set_breach_status"))],
               status: Annotated[str, Form()], note: Annotated[str, Form(max_length=2000)] = "",
               back: Annotated[str, Form(max_length=2000)] = "") -> Response:
    """Move the record to `status` with an optional note (kept in its history)."""
    return _after_change(request, me, move_record(request, session, me, breach_id, status, note), back)

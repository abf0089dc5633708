"""`/subjects/{subject_id}`: one wearer, for the staff who work their records.

Every section is an API read, made through the same service function and
audited with the same action and fields (channel console):

- assignments (device, period in London time) and zones (on the map as their
  true geometry, schedules in words): `api.service.subjects.read_subject`,
  ``GET /v1/subjects/{id}`` (``subject.read``); the page needs `get_subject`;
- compliance per curfew window (home / absent / unknown, no coordinates) over
  a period (London dates, default the latest 28 days detection has judged):
  `read_compliance`, ``GET /v1/subjects/{id}/compliance``
  (``subject.compliance``);
- breach history, a page at a time: the queue filtered to the wearer,
  every status (`read_queue`, ``breach.queue.read``);
- access requests about the wearer, for roles that may list them
  (`list_requests`, ``request.list``);
- who consulted the wearer's data, for roles that may read the audit log
  (`list_audit_entries`: auditor, admin): the log's entries under the
  wearer's pseudonym (`read_entries`, ``audit.read`` as ``GET /v1/audit/entries``).

A role without `get_subject` gets the 403 page (audited like the API's
refusal); a wearer unknown to the database, the 404 page.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response

from api.access.permissions import is_allowed
from api.access.requests import list_requests
from api.audit.entries import EntryFilter, FilterError, parse_bound, read_entries
from api.audit.log import commit_with_checkpoint
from api.service.breach_queue import QueueFilter, read_queue
from api.service.subjects import (
    STATUSES,
    PeriodError,
    UnknownSubject,
    read_compliance,
    read_subject,
)
from api.web.auth import ConsoleRefused, DbSession, console_audit, now_ms, require
from api.service.record_words import schedule_text, zone_shape_text
from api.web.pages.breach import map_data
from api.web.pages.queue import STATUS_LABELS
from api.web.pages.requests import GROUND_LABELS, STATUS_TAGS, people
from api.web.sessions import SignedIn
from api.web.templating import render
from geofence.model import zone_label, zone_version

__all__ = ["PAGE_SIZE", "REQUESTS_SHOWN", "SubjectView", "parse_view", "router"]

router = APIRouter(include_in_schema=False)

#: Rows per page of the breach history and of the consultations.
PAGE_SIZE = 20
#: The newest access requests about the wearer the page lists.
REQUESTS_SHOWN = 50
_PARAMS = ("from", "to", "breaches", "consulted")
_PAGES = ("breaches", "consulted")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ALL_STATUSES = ("actioned", "in_review", "new", "withdrawn")
SubjectId = Annotated[str, Path(min_length=1, max_length=200)]


@dataclass(frozen=True)
class SubjectView:
    """What the page's query asks for: the compliance period as London dates ('' for the
    default) and the page of the breach history and of the consultations."""

    from_date: str = ""
    to_date: str = ""
    breaches: int = 1
    consulted: int = 1

    def query(self, **change: object) -> str:
        """This view's query string with `change` applied (``from_date`` as ``from``; defaults left out)."""
        values = {"from": self.from_date, "to": self.to_date, "breaches": self.breaches,
                  "consulted": self.consulted} | change
        return urlencode({k: v for k, v in values.items() if v not in ("", None) and not (k in _PAGES and v == 1)})


def _page_number(name: str, value: str, problems: list[str]) -> int:
    value = value or "1"
    if not value.isdigit() or not 1 <= int(value) <= 100_000:
        problems.append(f"{name} must be a page number from 1, not {value[:20]!r}")
        return 1
    return int(value)


def parse_view(pairs: list[tuple[str, str]]) -> SubjectView:
    """The view a query string asks for; `ConsoleRefused` (400) naming what is wrong."""
    problems = [f"the page takes no parameter {k[:40]!r}" for k, _ in pairs if k not in _PARAMS]
    got = {k: v.strip() for k, v in pairs if k in _PARAMS}
    for name in ("from", "to"):
        if got.get(name) and not _DATE.match(got[name]):
            problems.append(f"{name} must be a date written 2024-03-31, not {got[name][:40]!r}")
    view = SubjectView(from_date=got.get("from", ""), to_date=got.get("to", ""),
                       breaches=_page_number("breaches", got.get("breaches", ""), problems),
                       consulted=_page_number("consulted", got.get("consulted", ""), problems))
    if problems:
        raise ConsoleRefused(400, "The wearer's page cannot show that", "; ".join(problems)[:500])
    return view


def _period(view: SubjectView) -> tuple[int | None, int | None]:
    try:
        return (parse_bound("from", view.from_date, end=False) if view.from_date else None,
                parse_bound("to", view.to_date, end=True) if view.to_date else None)
    except FilterError as exc:
        raise PeriodError(str(exc)) from None


def _compliance(request: Request, session, me: SignedIn, subject_id: str, view: SubjectView) -> dict:
    """The compliance section: the summary, or the reason the period cannot be judged."""
    try:
        start, end = _period(view)
        c = read_compliance(session, console_audit(request), me.user, request.app.state.settings.home, subject_id,
                            start_ms=start, end_ms=end, now_ms=now_ms(request),
                            flush_store=request.app.state.stream.flush)
    except PeriodError as exc:
        return {"compliance": None, "period_error": str(exc)}
    return {"compliance": c, "counts": c.counts(), "period_error": None}


def _version_text(key: str) -> str:
    return f"{zone_label(key)} (version {zone_version(key)})"


def _segments(summary) -> list[dict]:
    return [{"device_id": s.device_id, "start_ms": s.start_ms, "end_ms": s.end_ms,
             "zones": [_version_text(k) for k in s.zones]} for s in summary.segments]


def _zones(summary) -> tuple[list[dict], dict]:
    """The zones in words and the map's GeoJSON (`static/map.js`, zones as role "zone")."""
    words, features = [], []
    for z in summary.zones:
        name = _version_text(z.zone_id)
        words.append({"name": name, "kind": z.kind, "shape": zone_shape_text(z), "schedule": schedule_text(z)})
        for f in map_data(z, None)["features"]:
            features.append({**f, "properties": {**f["properties"], "name": name}})
    return words, {"type": "FeatureCollection", "features": features}


def _consultations(request: Request, session, me: SignedIn, subject_id: str, view: SubjectView):
    """The audit log's entries about the wearer, newest first, read as ``GET /v1/audit/entries?wearer=``
    reads them (``audit.read``); None for a role that may not read the log."""
    if not is_allowed("list_audit_entries", me.user.role):
        return None
    audit = console_audit(request)
    current, *older = audit.pseudonyms(subject_id)
    f = EntryFilter(wearer=current, same_wearer=tuple(older), limit=PAGE_SIZE, offset=(view.consulted - 1) * PAGE_SIZE)
    page = read_entries(session, f)
    audit.append(session, action="audit.read", actor=me.user, now_ms=now_ms(request),
                 detail={"read": "entries", **f.described()})
    return page


@router.get("/subjects/{subject_id}")
def subject_page(request: Request, subject_id: SubjectId, session: DbSession,
                 me: Annotated[SignedIn, Depends(require("get_subject"))]) -> Response:
    view = parse_view(list(request.query_params.multi_items()))
    audit, when = console_audit(request), now_ms(request)
    try:
        compliance = _compliance(request, session, me, subject_id, view)  # first: it moves received fixes to the store
        summary = read_subject(session, audit, me.user, subject_id, now_ms=when,
                               crs=request.app.state.stream.policy().crs)
    except UnknownSubject as exc:
        return render(request, "error.html", {"title": "No such wearer", "message": str(exc)}, status_code=404)
    breaches = read_queue(session, audit, me.user, QueueFilter(
        statuses=_ALL_STATUSES, subject_id=subject_id, limit=PAGE_SIZE, offset=(view.breaches - 1) * PAGE_SIZE),
        now_ms=when)
    asks = (list_requests(session, audit, me.user, now_ms=when, subject_id=subject_id, limit=REQUESTS_SHOWN)
            if is_allowed("list_access_requests", me.user.role) else None)
    consulted = _consultations(request, session, me, subject_id, view)
    users = people(session, [r.requester_id for r in asks or ()])
    commit_with_checkpoint(session, audit)
    zones, map_json = _zones(summary)
    return render(request, "subjects/subject.html", {
        **compliance, "subject_id": subject_id, "segments": _segments(summary), "zones": zones, "map_data": map_json,
        "view": view, "statuses": STATUSES,
        "breaches": breaches, "breach_pages": max(1, -(-breaches.total // PAGE_SIZE)), "status_labels": STATUS_LABELS,
        "requests": asks, "users": users, "ground_labels": GROUND_LABELS, "status_tags": STATUS_TAGS,
        "consulted": consulted,
        "consulted_pages": max(1, -(-consulted.total // PAGE_SIZE)) if consulted is not None else 1})

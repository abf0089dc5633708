"""`/breaches/{breach_id}`: one record, explained, with the evidence it rests on.

The record and its history are `api.service.breach_queue.read_breach`, the
API's `get_breach` (same ``breach.read`` audit entry, channel console, same
roles); the wearer's other records are `read_queue` filtered to the wearer
(``breach.queue.read``, as the queue filtered by wearer would be).

Evidence rule (`Settings.breach_evidence`): ``window`` shows only the fixes
inside the record's own window plus the policy's coverage either side
(`api.service.breach_evidence`), on ground ``bail_breach`` with the record as
reference, audited as ``breach.evidence`` (a consultation: the window and the
number of fixes shown); ``request`` shows no fixes, only a link to ask for
them through an access request. The map and the timeline read the same
fixes as the table, from JSON data blocks (no inline script, CSP).

Status and assignment forms post here and come back here; the change is the
queue's (`change_status`, ``breach.status``).
"""
from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from api.access.permissions import is_allowed
from api.audit.log import commit_with_checkpoint
from api.db.models import BreachRow
from api.service.breach_evidence import STATE_NAMES, Evidence, breach_zone, read_evidence
from api.service.breach_queue import (PEOPLE_STATUSES, UNCHANGED, QueueError, QueueFilter, UnknownBreach,
                                      change_status, read_breach, read_queue)
from api.service.stream.detector_state import home_policy
from api.web.auth import ConsoleRefused, DbSession, console_audit, now_ms, require, require_form
from api.web.breach_words import priority_text, rule_text, schedule_text, zone_shape_text
from api.web.london import london_time
from api.web.pages.queue import STATUS_LABELS, BreachId, _refused
from api.web.sessions import SignedIn
from api.web.templating import render
from geofence.model import Zone
from trails.timestamps import format_ms

__all__ = ["router", "OTHER_RECORDS", "EVIDENCE_GROUND"]

router = APIRouter(include_in_schema=False)

#: How many of the wearer's other records the page lists.
OTHER_RECORDS = 10
#: The ground a record's evidence is consulted on (governance.md): the breach itself.
EVIDENCE_GROUND = "bail_breach"
_ALL_STATUSES = ("actioned", "in_review", "new", "withdrawn")


def _num(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def _zone_geometry(zone: Zone) -> dict:
    if zone.is_circle:
        return {"type": "Point", "coordinates": list(zone.center_lonlat)}
    return {"type": "MultiPolygon", "coordinates": [[[list(p) for p in ring] for ring in poly]
                                                    for poly in zone.polygons]}


def map_data(zone: Zone | None, ev: Evidence | None) -> dict:
    """GeoJSON for `static/map.js`: the zone (role zone; a circle as a Point with radius_m) and the fixes
    (role fix, with state, accuracy_m and their London time)."""
    features = []
    if zone is not None:
        features.append({"type": "Feature", "geometry": _zone_geometry(zone),
                         "properties": {"role": "zone", "name": zone.zone_id.split("@")[0], "kind": zone.kind,
                                        "radius_m": zone.radius_m}})
    for i in range(len(ev) if ev is not None else 0):
        features.append({"type": "Feature", "geometry": {"type": "Point",
                                                         "coordinates": [float(ev.lon[i]), float(ev.lat[i])]},
                         "properties": {"role": "fix", "n": i + 1, "state": _state(ev, i),
                                        "accuracy_m": _num(ev.accuracy_m[i]),
                                        "time": london_time(int(ev.ts_ms[i])).text}})
    return {"type": "FeatureCollection", "features": features}


def _state(ev: Evidence, i: int) -> str | None:
    s = int(ev.state[i])
    return STATE_NAMES[s] if s >= 0 else None


def timeline_data(b: BreachRow, ev: Evidence, gap_ms: int) -> dict:
    """Series for `static/timeline.js` (seconds since the epoch; state 0 OUT, 1 UNCERTAIN, 2 IN)."""
    return {"t": [int(t) / 1000 for t in ev.ts_ms.tolist()],
            "state": [None if s < 0 else int(s) for s in ev.state.tolist()],
            "battery": [_num(v) for v in ev.battery_pct.tolist()],
            "record": [b.start_ms / 1000, b.end_ms / 1000], "window": [ev.start_ms / 1000, ev.end_ms / 1000],
            "gap_s": gap_ms / 1000}


def fix_rows(ev: Evidence, gap_ms: int) -> list[dict]:
    """The table of fixes: time, state, accuracy, battery, and a gap before it when longer than the policy's."""
    rows, prev = [], None
    for i, t in enumerate(ev.ts_ms.tolist()):
        gap = prev is not None and t - prev > gap_ms
        rows.append({"n": i + 1, "ts_ms": t, "state": _state(ev, i), "lat": float(ev.lat[i]),
                     "lon": float(ev.lon[i]), "accuracy_m": _num(ev.accuracy_m[i]),
                     "battery_pct": _num(ev.battery_pct[i]), "gap_before_s": (t - prev) / 1000 if gap else None})
        prev = t
    return rows


def _audit_evidence(session, audit, me: SignedIn, b: BreachRow, ev: Evidence, coverage_ms: int, when: int) -> None:
    audit.append(session, action="breach.evidence", actor=me.user, subject_id=b.subject_id,
                 ground=EVIDENCE_GROUND, justification_ref=f"breach:{b.breach_id}", now_ms=when,
                 detail={"breach_id": b.breach_id, "start": format_ms(ev.start_ms), "end": format_ms(ev.end_ms),
                         "coverage_s": coverage_ms / 1000, "n_fixes": len(ev)})


@router.get("/breaches/{breach_id}")
def breach_page(request: Request, breach_id: BreachId, session: DbSession,
                me: Annotated[SignedIn, Depends(require("get_breach"))]) -> Response:
    audit, when = console_audit(request), now_ms(request)
    settings = request.app.state.settings
    try:
        b, events = read_breach(session, audit, me.user, breach_id, now_ms=when)
    except UnknownBreach as exc:  # answered here: after the request's rollback the user could not be read
        return render(request, "error.html", {"title": "No such record", "message": str(exc)}, status_code=404)
    others = [o for o in read_queue(session, audit, me.user, QueueFilter(
        statuses=_ALL_STATUSES, subject_id=b.subject_id, limit=OTHER_RECORDS + 1), now_ms=when).rows
        if o.breach_id != b.breach_id][:OTHER_RECORDS]
    policy = home_policy(settings.home)
    zone = breach_zone(session, b, policy)
    ev = None
    if settings.breach_evidence == "window":
        commit_with_checkpoint(session, audit)  # the reads above are recorded before any fix is read
        request.app.state.stream.flush()  # fixes the service received are read from the store
        ev = read_evidence(settings.home, session, b, zone, policy)
        _audit_evidence(session, audit, me, b, ev, policy.coverage_ms, when)
    commit_with_checkpoint(session, audit)
    return render(request, "breach/breach.html", {
        "b": b, "events": events, "others": others, "zone": zone, "policy": policy, "status_labels": STATUS_LABELS,
        "people_statuses": PEOPLE_STATUSES, "can_change": is_allowed("set_breach_status", me.user.role),
        "can_request": is_allowed("create_access_request", me.user.role), "rule": rule_text(b, policy),
        "priority_reason": priority_text(b, policy), "schedule": schedule_text(zone) if zone else [],
        "zone_shape": zone_shape_text(zone) if zone else "", "evidence": ev, "tile_url": settings.tile_url or "",
        "fixes": fix_rows(ev, policy.gap_ms) if ev is not None else [],
        "map_data": map_data(zone, ev), "timeline": timeline_data(b, ev, policy.gap_ms) if ev is not None else None})


def _back_here(b: BreachRow) -> Response:
    return RedirectResponse(f"/breaches/{b.breach_id}#history", status_code=303)


@router.post("/breaches/{breach_id}/assign")
def assign_to_me(request: Request, breach_id: BreachId, session: DbSession,
                 me: Annotated[SignedIn, Depends(require_form("set_breach_status"))]) -> Response:
    """Assign the record to the signed-in caseworker, its status unchanged."""
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
    return _back_here(b)


@router.post("/breaches/{breach_id}/status")
def set_status(request: Request, breach_id: BreachId, session: DbSession,
               me: Annotated[SignedIn, Depends(require_form("set_breach_status"))],
               status: Annotated[str, Form()], note: Annotated[str, Form(max_length=2000)] = "") -> Response:
    """Move the record to `status` with an optional note (kept in its history)."""
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
    return _back_here(b)

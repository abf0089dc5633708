"""`/breaches/{breach_id}`: one record, explained, with the evidence it rests on.

The record and its history are `api.service.breach_queue.read_breach`, the
API's `get_breach` (same ``breach.read`` audit entry, channel console, same
roles); the wearer's other records are `read_queue` filtered to the wearer
(``breach.queue.read``, as the queue filtered by wearer would be).

Evidence rule (`Settings.breach_evidence`): ``window`` shows only the fixes
inside the record's own window plus the policy's coverage either side
(`api.service.breach_evidence`), on ground ``bail_breach`` with the record as
reference, audited as ``breach.evidence`` (a consultation: the window and the
number of fixes shown, and ``fixes_sha256``, a digest of exactly those
fixes); ``request`` shows no fixes, only a link to ask for them through an
access request.

The map and the timeline show every fix of the window; the HTML carries only
a page of the table and the counts, and the map and timeline data come from
``/breaches/{id}/evidence.json`` (a week of fixes serialised into the page
was most of its render time). That data is the SAME consultation as the
page, not a second one, so it is not audited again; instead it is bound to
the audited page view: the link carries a short-lived token
(`api.web.evidence_link`: HMAC keyed by the session id over the record, the
window and the digest of the fixes the audit entry names). The data route
applies the same permission (``get_breach``) and the same `breach_evidence`
setting, recomputes the same window, reads the fixes again and serves them
only if their digest is the audited one (else 403: reload the page), so what
the browser receives is exactly what the log says was shown, to that
session, within minutes. A token that is missing, expired, or another
session's, record's or window's is refused and the refusal audited, as any
console refusal is. (Rejected: auditing the data URL as the consultation,
which leaves the table page unaudited or audits twice per view; caching
the fixes in the process between the two requests, which breaks with more
than one worker.)

Status and assignment forms post here and come back here; the change is the
queue's (`api.web.pages.queue.assign_record` / `move_record`, ``breach.status``).
"""
from __future__ import annotations

import math
from typing import Annotated

import numpy as np

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from api.access.permissions import is_allowed
from api.audit.log import commit_with_checkpoint
from api.db.models import BreachRow
from api.service.breach_evidence import EVIDENCE_GROUND, STATE_NAMES, Evidence, breach_zone, read_evidence
from api.service.breach_queue import PEOPLE_STATUSES, QueueError, QueueFilter, UnknownBreach, read_breach, read_queue
from api.service.devices import fault_marks
from api.service.evidence_documents import evidence_document
from api.service.stream.detector_state import home_policy
from api.web.auth import ConsoleRefused, DbSession, console_audit, now_ms, require, require_form
from api.service.record_words import priority_text, rule_text, schedule_text, zone_shape_text
from api.web.evidence_link import check_token, fixes_digest, make_token
from api.web.pages.queue import STATUS_LABELS, BreachId, assign_record, move_record
from api.web.refusal import audit_refusal, release
from api.web.sessions import SignedIn
from api.web.templating import render
from geofence.model import Zone
from trails.timestamps import format_ms, format_ms_column

__all__ = ["router", "OTHER_RECORDS", "FIX_PAGE"]

router = APIRouter(include_in_schema=False)

#: Fixes per page of the evidence table (the map and the timeline show them all).
FIX_PAGE = 100
#: How many of the wearer's other records the page lists.
OTHER_RECORDS = 10
_ALL_STATUSES = ("actioned", "in_review", "new", "withdrawn")
_NO_STORE = {"Cache-Control": "no-store"}


def _num(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def _zone_geometry(zone: Zone) -> dict:
    if zone.is_circle:
        return {"type": "Point", "coordinates": list(zone.center_lonlat)}
    return {"type": "MultiPolygon", "coordinates": [[[list(p) for p in ring] for ring in poly]
                                                    for poly in zone.polygons]}


def _nan_none(a) -> list:
    return [None if v != v else v for v in a.tolist()]  # NaN -> null (JSON has no NaN)


def map_data(zone: Zone | None, ev: Evidence | None) -> dict:
    """GeoJSON for `static/map.js`: the zone (role zone; a circle as a Point with radius_m) and the fixes,
    one MultiPoint feature per state (role fix) whose properties hold per-point arrays ``n`` (1-based
    number in the table), ``ts`` (UTC) and ``accuracy_m``: columnar, so a week of fixes stays cheap to
    build and to send."""
    features = []
    if zone is not None:
        features.append({"type": "Feature", "geometry": _zone_geometry(zone),
                         "properties": {"role": "zone", "name": zone.zone_id.split("@")[0], "kind": zone.kind,
                                        "radius_m": zone.radius_m}})
    if ev is not None and len(ev):
        utc = format_ms_column(ev.ts_ms).to_pylist()
        for code in (-1, 0, 1, 2):
            idx = np.flatnonzero(ev.state == code)
            if idx.size == 0:
                continue
            features.append({"type": "Feature",
                             "geometry": {"type": "MultiPoint",
                                          "coordinates": np.column_stack([ev.lon[idx], ev.lat[idx]]).tolist()},
                             "properties": {"role": "fix", "state": STATE_NAMES[code] if code >= 0 else None,
                                            "n": (idx + 1).tolist(), "ts": [utc[i] for i in idx.tolist()],
                                            "accuracy_m": _nan_none(ev.accuracy_m[idx])}})
    return {"type": "FeatureCollection", "features": features}


def _state(ev: Evidence, i: int) -> str | None:
    s = int(ev.state[i])
    return STATE_NAMES[s] if s >= 0 else None


def timeline_data(b: BreachRow, ev: Evidence, gap_ms: int) -> dict:
    """Series for `static/timeline.js` (seconds since the epoch; state 0 OUT, 1 UNCERTAIN, 2 IN)."""
    return {"t": (ev.ts_ms / 1000).tolist(), "state": [None if s < 0 else s for s in ev.state.tolist()],
            "battery": _nan_none(ev.battery_pct), "record": [b.start_ms / 1000, b.end_ms / 1000],
            "window": [ev.start_ms / 1000, ev.end_ms / 1000], "gap_s": gap_ms / 1000}


def fix_rows(ev: Evidence, gap_ms: int, lo: int = 0, hi: int | None = None) -> list[dict]:
    """Fixes ``lo:hi`` for the table: time, state, accuracy, battery, and the gap before it when
    longer than the policy's (the first row's gap is measured from the fix before the slice)."""
    rows = []
    hi = len(ev) if hi is None else min(hi, len(ev))
    ts = ev.ts_ms.tolist()
    for i in range(lo, hi):
        t = ts[i]
        gap = i > 0 and t - ts[i - 1] > gap_ms
        rows.append({"n": i + 1, "ts_ms": t, "state": _state(ev, i), "lat": float(ev.lat[i]),
                     "lon": float(ev.lon[i]), "accuracy_m": _num(ev.accuracy_m[i]),
                     "battery_pct": _num(ev.battery_pct[i]), "gap_before_s": (t - ts[i - 1]) / 1000 if gap else None})
    return rows


def evidence_digest(ev: Evidence) -> str:
    """Which fixes, exactly (time, position, accuracy, battery, state): the audit entry's ``fixes_sha256``."""
    return fixes_digest(ev.ts_ms, ev.lat, ev.lon, ev.accuracy_m, ev.battery_pct, ev.state)


def _audit_evidence(session, audit, me: SignedIn, b: BreachRow, ev: Evidence, coverage_ms: int, when: int,
                    digest: str) -> None:
    audit.append(session, action="breach.evidence", actor=me.user, subject_id=b.subject_id,
                 ground=EVIDENCE_GROUND, justification_ref=f"breach:{b.breach_id}", now_ms=when,
                 detail={"breach_id": b.breach_id, "start": format_ms(ev.start_ms), "end": format_ms(ev.end_ms),
                         "coverage_s": coverage_ms / 1000, "n_fixes": len(ev), "fixes_sha256": digest})


@router.get("/breaches/{breach_id}")
def breach_page(request: Request, breach_id: BreachId, session: DbSession,
                me: Annotated[SignedIn, Depends(require("get_breach"))],
                fixes: Annotated[int, Query(ge=1, le=100_000)] = 1) -> Response:
    """The record page; `fixes` is the page of the evidence table (`FIX_PAGE` fixes each)."""
    audit, when = console_audit(request), now_ms(request)
    settings = request.app.state.settings
    if settings.breach_evidence == "window":
        # fixes the service received are read from the store: move them there first, with this request's
        # (read-only so far) transaction ended, as the API's extract download does (SQLite has one writer)
        session.commit()
        request.app.state.stream.flush()
    try:
        b, events = read_breach(session, audit, me.user, breach_id, now_ms=when)
    except UnknownBreach as exc:
        raise ConsoleRefused(404, "No such record", str(exc)) from None
    others = [o for o in read_queue(session, audit, me.user, QueueFilter(
        statuses=_ALL_STATUSES, subject_id=b.subject_id, limit=OTHER_RECORDS + 1), now_ms=when).rows
        if o.breach_id != b.breach_id][:OTHER_RECORDS]
    policy = home_policy(settings.home)
    zone = breach_zone(session, b, policy)
    ev, data_url = None, None
    if settings.breach_evidence == "window":
        ev = read_evidence(settings.home, session, b, zone, policy)
        digest = evidence_digest(ev)
        _audit_evidence(session, audit, me, b, ev, policy.coverage_ms, when, digest)
        token = make_token(me.session_id, b.breach_id, (ev.start_ms, ev.end_ms), digest, now_ms=when)
        data_url = f"/breaches/{b.breach_id}/evidence.json?t={token}"
    fault = fault_marks(session, [b]).get(b.breach_id, (None, None))[1]
    commit_with_checkpoint(session, audit)  # the reads and the consultation, in one transaction, before showing
    return render(request, "breach/breach.html", {
        "b": b, "events": events, "others": others, "zone": zone, "policy": policy, "status_labels": STATUS_LABELS,
        "fault": fault,
        "people_statuses": PEOPLE_STATUSES, "can_change": is_allowed("set_breach_status", me.user.role),
        "can_request": is_allowed("create_access_request", me.user.role), "rule": rule_text(b, policy),
        "priority_reason": priority_text(b, policy), "schedule": schedule_text(zone) if zone else [],
        "zone_shape": zone_shape_text(zone) if zone else "", "evidence": ev,
        "fixes": fix_rows(ev, policy.gap_ms, (fixes - 1) * FIX_PAGE, fixes * FIX_PAGE) if ev is not None else [],
        "fix_page": fixes, "fix_pages": max(1, -(-len(ev) // FIX_PAGE)) if ev is not None else 1,
        "n_fixes": len(ev) if ev is not None else 0, "data_url": data_url})


@router.get("/breaches/{breach_id}/evidence.json")
def evidence_data(request: Request, breach_id: BreachId, session: DbSession,
                  me: Annotated[SignedIn, Depends(require("get_breach"))],
                  t: Annotated[str, Query(max_length=100)] = "") -> Response:
    """The map and timeline data of the page view the token names (module docstring): ``{"map": GeoJSON,
    "timeline": series}``; not audited again (the page's ``breach.evidence`` entry covers it)."""
    settings = request.app.state.settings
    b = session.get(BreachRow, breach_id) if settings.breach_evidence == "window" else None
    if b is None:
        session.rollback()
        return JSONResponse({"detail": "no evidence data here"}, status_code=404, headers=_NO_STORE)
    policy = home_policy(settings.home)
    zone = breach_zone(session, b, policy)
    ev = read_evidence(settings.home, session, b, zone, policy)
    why = check_token(t, me.session_id, b.breach_id, (ev.start_ms, ev.end_ms), evidence_digest(ev),
                      now_ms=now_ms(request))
    data = None if why else {"map": map_data(zone, ev), "timeline": timeline_data(b, ev, policy.gap_ms)}
    subject_id = b.subject_id
    release(session, me)  # read only; a refusal's entry is written in its own transaction
    if why is not None:
        audit_refusal(request, me, "get_breach", 403, why, subject_id=subject_id, params={"breach_id": breach_id})
        return JSONResponse({"detail": why}, status_code=403, headers=_NO_STORE)
    return JSONResponse(data, headers=_NO_STORE)


@router.get("/breaches/{breach_id}/evidence.pdf")
def evidence_pack(request: Request, breach_id: BreachId, session: DbSession,
                  me: Annotated[SignedIn, Depends(require("get_breach_evidence"))]) -> Response:
    """The record's evidence pack as ``GET /v1/breaches/{id}/evidence`` serves it (the same
    ``breach.evidence_pack`` entry, channel console)."""
    audit = console_audit(request)
    try:
        pack = evidence_document(session, audit, me.user, request.app.state.settings, breach_id, "pdf",
                                 now_ms=now_ms(request), flush_store=request.app.state.stream.flush)
    except UnknownBreach as exc:
        raise ConsoleRefused(404, "No such record", str(exc)) from None
    except QueueError as exc:
        raise ConsoleRefused(409, "No evidence pack here", str(exc)) from None
    commit_with_checkpoint(session, audit)
    return Response(content=pack.content, media_type=pack.media_type,
                    headers={"Content-Disposition": f'attachment; filename="{pack.filename}"',
                             "X-Evidence-SHA256": pack.sha256, **_NO_STORE})


def _back_here(b: BreachRow) -> Response:
    return RedirectResponse(f"/breaches/{b.breach_id}#history", status_code=303)


@router.post("/breaches/{breach_id}/assign")
def assign_to_me(request: Request, breach_id: BreachId, session: DbSession,
                 me: Annotated[SignedIn, Depends(require_form("set_breach_status"))]) -> Response:
    """Assign the record to the signed-in caseworker, its status unchanged."""
    return _back_here(assign_record(request, session, me, breach_id))


@router.post("/breaches/{breach_id}/status")
def set_status(request: Request, breach_id: BreachId, session: DbSession,
               me: Annotated[SignedIn, Depends(require_form("set_breach_status"))],
               status: Annotated[str, Form()], note: Annotated[str, Form(max_length=2000)] = "") -> Response:
    """Move the record to `status` with an optional note (kept in its history)."""
    return _back_here(move_record(request, session, me, breach_id, status, note))

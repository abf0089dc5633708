"""`/v1/access-requests`: ask for a wearer's trail or attendance, confirm an
external requester's identity, decide, withdraw, read, and download the
approved extract.

The rules (governance.md): one of five lawful grounds; justification and
necessity in words; the period inside the wearer's monitoring and already
ended (an extract is a record of the past, never a live feed); a bail-breach
request names the breach; a period longer than the ground's maximum is
accepted but flagged too broad, and cannot be approved without narrowing;
"partial data" removes at least `min_narrowing_fraction` of the period asked
for; external requesters' identity is confirmed before a decision; the
approver is never the requester, compared as persons, not accounts; an
approval expires; every call is audited, and each change commits with its
audit entry.

An approval of data is bound to the wearer's assignments (device, period,
zones) as they stood when it was decided, clipped to the approved period;
the extract is built from exactly those, so changing assignments afterwards
can never point an approved extract at another wearer's device.
"""
from __future__ import annotations

import hashlib
import json
import math
from fractions import Fraction
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from geofence.model import Assignment, Policy
from trails.timestamps import DAY_MS

from api.http.deps import AuditDep, ClockDep, CurrentUser, SessionDep, SettingsDep, authorize, commit
from api.http.guard import GuardedRoute
from api.service.detections import load_assignments, load_zones_from_db
from api.http.errors import Conflict, Forbidden, Gone, NotFound, Unprocessable
from api.db.models import AccessRequest, BreachRow, User
from api.http.schemas import (AccessRequestCreate, AccessRequestList, AccessRequestPublic, DecisionCreate, Ground,
                       IdentityCheckCreate, Kind, fmt_ts, parse_ts)
from api.settings import Settings

router = APIRouter(prefix="/access-requests", tags=["access requests"], dependencies=[Depends(authorize)], route_class=GuardedRoute)

RequestId = Annotated[int, Path(ge=1, le=2**31 - 1, description="access request id")]
DATA_OUTCOMES = frozenset({"data_provided", "partial_data_provided"})
TRAIL_FORMATS = ("geojson", "csv", "gpx")
ATTENDANCE_FORMATS = ("json", "csv")


# ---------------------------------------------------------------- helpers

def _public(req: AccessRequest, settings: Settings) -> AccessRequestPublic:
    return AccessRequestPublic(
        id=req.id, requester_id=req.requester_id, subject_id=req.subject_id, kind=req.kind, ground=req.ground,
        start=fmt_ts(req.start_ms), end=fmt_ts(req.end_ms), justification=req.justification,
        necessity=req.necessity, reference=req.reference, urgency=req.urgency,
        respond_by=fmt_ts(req.respond_by_ms), too_broad=bool(req.too_broad),
        max_period_days=settings.max_period_days.get(req.ground), status=req.status,
        created_at=fmt_ts(req.created_ms), identity_checked=req.identity_checked_ms is not None,
        identity_checked_by=req.identity_checked_by, identity_checked_at=fmt_ts(req.identity_checked_ms),
        outcome=req.outcome, decision_reason=req.decision_reason, approved_start=fmt_ts(req.approved_start_ms),
        approved_end=fmt_ts(req.approved_end_ms), decided_by=req.decided_by, decided_at=fmt_ts(req.decided_ms),
        expires_at=fmt_ts(req.expires_ms), guidance_version=req.guidance_version,
        withdrawn_at=fmt_ts(req.withdrawn_ms), version=req.version)


def _get(session: Session, request_id: int) -> AccessRequest:
    req = session.get(AccessRequest, request_id)
    if req is None:
        raise NotFound(f"access request {request_id} not found")
    return req


def _ref(req: AccessRequest) -> str:
    """What the audit log records as the justification reference: the request itself
    (its free-text case reference stays in `access_requests`, where the request id
    leads), or, for a bail breach, the breach id the request was checked against."""
    if req.ground == "bail_breach" and req.reference:
        return f"breach:{req.reference}"
    return f"request:{req.id}"


def _parse(name: str, value: str) -> int:
    try:
        return parse_ts(value)
    except ValueError as exc:
        raise Unprocessable(f"{name}: {exc}") from None


def _monitoring_periods(session: Session, subject_id: str) -> list[tuple[int, float]]:
    """The union of the subject's assignments as merged [start, end) intervals
    (an open assignment runs on indefinitely)."""
    spans = sorted((a.start_ms, float("inf") if a.end_ms is None else a.end_ms)
                   for a in load_assignments(session, subject_id))
    merged: list[list] = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged]


def _guarded_update(session: Session, req: AccessRequest, conflict: str, **values) -> None:
    """UPDATE ... WHERE id=? AND version=? AND status='pending': the change is
    written only if nobody changed the request since we read it; else 409."""
    res = session.execute(
        update(AccessRequest)
        .where(AccessRequest.id == req.id, AccessRequest.version == req.version, AccessRequest.status == "pending")
        .values(version=req.version + 1, **values)
        .execution_options(synchronize_session=False))
    if res.rowcount != 1:
        raise Conflict(conflict)
    session.refresh(req)


def _require_pending(req: AccessRequest) -> None:
    if req.status != "pending":
        raise Conflict(f"access request {req.id} is {req.status}, not pending")


def _not_own(session: Session, req: AccessRequest, user: User, what: str) -> None:
    """The two-person rule, by person: the account that made the request, and
    any other account of the same person (`User.person`: a revoked caseworker
    back as an approver), may not act on it."""
    if req.requester_id == user.id:
        raise Forbidden(f"the approver is never the requester: user {user.id} made access request {req.id} "
                        f"and may not {what} it")
    requester = session.get(User, req.requester_id)
    if requester is not None and requester.person == user.person:
        raise Forbidden(f"the approver is never the requester: user {user.id} ({user.name!r}) is the same person "
                        f"as user {requester.id} ({requester.name!r}), who made access request {req.id}, and may "
                        f"not {what} it")


def _check_narrowing(req: AccessRequest, s: int, e: int, settings: Settings) -> None:
    """`partial_data_provided` must remove at least `settings.min_narrowing_fraction`
    of the requested period (exact arithmetic: no rounding at the boundary)."""
    asked = req.end_ms - req.start_ms
    removed = asked - (e - s)
    share = Fraction(str(settings.min_narrowing_fraction))
    if removed >= asked * share:
        return
    instead = ("narrow it further or decide rejected_too_broad" if req.too_broad
               else "decide data_provided to provide the period asked for")
    raise Unprocessable(f"{fmt_ts(s)}..{fmt_ts(e)} removes {_seconds(removed)} s of the {_seconds(asked)} s asked "
                        f"for; partial_data_provided must remove at least {float(share * 100):g}% of it "
                        f"({_seconds(math.ceil(asked * share))} s, setting min_narrowing_fraction): {instead}")


def _seconds(ms: int) -> str:
    return str(ms // 1000) if ms % 1000 == 0 else str(ms / 1000)


def _bind(session: Session, req: AccessRequest, start_ms: int, end_ms: int) -> str:
    """The wearer's assignments now, clipped to the approved period, as the JSON stored with the decision."""
    from api.access.extracts import clip_assignments

    bound = clip_assignments(load_assignments(session, req.subject_id), req.subject_id, start_ms, end_ms)
    return json.dumps([{"device_id": a.device_id, "start_ms": a.start_ms, "end_ms": a.end_ms, "zones": list(a.zones)}
                       for a in bound], sort_keys=True, separators=(",", ":"))


def _bound(req: AccessRequest) -> tuple[Assignment, ...]:
    """The assignments the decision was bound to (`_bind`)."""
    return tuple(Assignment(req.subject_id, b["device_id"], int(b["start_ms"]), int(b["end_ms"]), tuple(b["zones"]))
                 for b in json.loads(req.bound_assignments_json))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- endpoints

@router.post("", operation_id="create_access_request", status_code=201, response_model=AccessRequestPublic)
def create_access_request(body: AccessRequestCreate, session: SessionDep, user: CurrentUser, audit: AuditDep,
                          settings: SettingsDep, clock: ClockDep) -> AccessRequestPublic:
    """Ask for one wearer's trail or attendance for one period.

    Roles: caseworker, requester.

    The period must lie inside the wearer's monitoring (422 otherwise; 404
    for a wearer with no monitoring record). A `bail_breach` request names,
    in `reference`, a breach of that wearer overlapping the period. A period
    longer than the ground's maximum is accepted with `too_broad: true`.
    The period must have ended: an `end` after now is a 422.
    """
    start_ms, end_ms = _parse("start", body.start), _parse("end", body.end)
    if start_ms >= end_ms:
        raise Unprocessable(f"start {body.start!r} must be before end {body.end!r}")
    now = clock()
    if end_ms > now:
        raise Unprocessable(f"period {fmt_ts(start_ms)}..{fmt_ts(end_ms)} has not ended (now is {fmt_ts(now)}): "
                            f"ask for a period that has ended; an extract is never a live feed")
    respond_by_ms = _parse("respond_by", body.respond_by) if body.respond_by is not None else None
    periods = _monitoring_periods(session, body.subject_id)
    if not periods:
        raise NotFound(f"subject {body.subject_id!r} has no monitoring record")
    if not any(s <= start_ms and end_ms <= e for s, e in periods):
        spans = ", ".join(f"{fmt_ts(s)}..{'open' if e == float('inf') else fmt_ts(int(e))}" for s, e in periods)
        raise Unprocessable(f"period {fmt_ts(start_ms)}..{fmt_ts(end_ms)} is not inside the monitoring of "
                            f"subject {body.subject_id!r} ({spans})")
    if body.ground == "bail_breach":
        if not body.reference:
            raise Unprocessable("ground bail_breach needs reference: the breach_id of the breach concerned")
        breach = session.get(BreachRow, body.reference)
        if (breach is None or breach.subject_id != body.subject_id or breach.kind != "breach"
                or not (breach.start_ms < end_ms and breach.end_ms > start_ms)):
            raise Unprocessable(f"reference {body.reference!r} is not a breach of subject {body.subject_id!r} "
                                f"overlapping {fmt_ts(start_ms)}..{fmt_ts(end_ms)}")
    max_days = settings.max_period_days[body.ground]
    req = AccessRequest(requester_id=user.id, subject_id=body.subject_id, kind=body.kind, ground=body.ground,
                        start_ms=start_ms, end_ms=end_ms, justification=body.justification,
                        necessity=body.necessity, reference=body.reference, urgency=body.urgency,
                        respond_by_ms=respond_by_ms, too_broad=(end_ms - start_ms) > max_days * DAY_MS,
                        status="pending", created_ms=now, version=1)
    session.add(req)
    session.flush()
    audit.append(session, action="request.create", actor=user, request_id=req.id, subject_id=req.subject_id,
                 ground=req.ground, justification_ref=_ref(req), now_ms=now,
                 detail={"kind": req.kind, "start": fmt_ts(start_ms), "end": fmt_ts(end_ms),
                         "too_broad": req.too_broad, "urgency": req.urgency})
    out = _public(req, settings)
    commit(session, audit)
    return out


@router.get("", operation_id="list_access_requests", response_model=AccessRequestList)
def list_access_requests(
        session: SessionDep, user: CurrentUser, audit: AuditDep, settings: SettingsDep, clock: ClockDep,
        status: Literal["pending", "decided", "withdrawn"] | None = None,
        subject_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        ground: Ground | None = None, kind: Kind | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0) -> AccessRequestList:
    """List access requests, newest first, optionally filtered.

    Roles: caseworker, approver, auditor, admin (all requests); requester
    (only their own).
    """
    q = select(AccessRequest).order_by(AccessRequest.id.desc())
    if user.role == "requester":
        q = q.where(AccessRequest.requester_id == user.id)
    for col, value in ((AccessRequest.status, status), (AccessRequest.subject_id, subject_id),
                       (AccessRequest.ground, ground), (AccessRequest.kind, kind)):
        if value is not None:
            q = q.where(col == value)
    rows = list(session.scalars(q.limit(limit).offset(offset)))
    audit.append(session, action="request.list", actor=user, subject_id=subject_id, ground=ground,
                 now_ms=clock(),
                 detail={"status": status, "kind": kind, "limit": limit, "offset": offset,
                         "request_ids": [r.id for r in rows]})
    out = AccessRequestList(items=[_public(r, settings) for r in rows], count=len(rows))
    commit(session, audit)
    return out


@router.get("/{request_id}", operation_id="get_access_request", response_model=AccessRequestPublic)
def get_access_request(request_id: RequestId, session: SessionDep, user: CurrentUser, audit: AuditDep,
                       settings: SettingsDep, clock: ClockDep) -> AccessRequestPublic:
    """One access request.

    Roles: caseworker, approver, auditor, admin (any request); requester
    (only their own: 403 otherwise).
    """
    req = _get(session, request_id)
    if user.role == "requester" and req.requester_id != user.id:
        raise Forbidden(f"requesters may read only their own requests; {request_id} is not yours")
    audit.append(session, action="request.read", actor=user, request_id=req.id, subject_id=req.subject_id,
                 ground=req.ground, justification_ref=_ref(req), now_ms=clock())
    out = _public(req, settings)
    commit(session, audit)
    return out


@router.post("/{request_id}/identity-check", operation_id="check_identity", response_model=AccessRequestPublic)
def check_identity(request_id: RequestId, body: IdentityCheckCreate, session: SessionDep, user: CurrentUser,
                   audit: AuditDep, settings: SettingsDep, clock: ClockDep) -> AccessRequestPublic:
    """Record that the requester's identity was confirmed (needed before an
    external request can be decided).

    Roles: approver (never on their own request). Pending requests only (409);
    a second check is a 409.
    """
    req = _get(session, request_id)
    _not_own(session, req, user, "confirm the identity on")
    _require_pending(req)
    if req.identity_checked_ms is not None:
        raise Conflict(f"identity on access request {req.id} was already confirmed at "
                       f"{fmt_ts(req.identity_checked_ms)}")
    now = clock()
    _guarded_update(session, req, f"access request {req.id} changed meanwhile: read it again",
                    identity_checked_by=user.id, identity_checked_ms=now, identity_check_note=body.note)
    audit.append(session, action="request.identity_check", actor=user, request_id=req.id,
                 subject_id=req.subject_id, ground=req.ground, justification_ref=_ref(req), now_ms=now)
    out = _public(req, settings)
    commit(session, audit)
    return out


@router.post("/{request_id}/decision", operation_id="decide_access_request", response_model=AccessRequestPublic)
def decide_access_request(request_id: RequestId, body: DecisionCreate, session: SessionDep, user: CurrentUser,
                          audit: AuditDep, settings: SettingsDep, clock: ClockDep) -> AccessRequestPublic:
    """Decide a pending request.

    Roles: approver, never on a request they made themselves, from this or
    any other account of theirs (403).

    `partial_data_provided` needs `start`/`end`, a strict sub-period of the
    request no longer than the ground's maximum (409) that removes at least
    `min_narrowing_fraction` of it (422); other outcomes take none. An
    approval of data stores the wearer's assignments as they are now,
    clipped to the approved period: the extract uses exactly those.
    External (requester-role) requests need the identity check first (409).
    A too-broad request cannot be approved as asked (409): narrow it or
    reject it. Only pending requests can be decided (409), and of two
    concurrent decisions only one wins (409 for the other). The approval
    expires `approval_ttl_s` after the decision.
    """
    req = _get(session, request_id)
    _not_own(session, req, user, "decide")
    _require_pending(req)
    requester = session.get(User, req.requester_id)
    if requester is not None and requester.role == "requester" and req.identity_checked_ms is None:
        raise Conflict(f"access request {req.id} is from an external requester: confirm their identity "
                       f"(POST /v1/access-requests/{req.id}/identity-check) before deciding")
    approved: tuple[int, int] | None = None
    if body.outcome == "partial_data_provided":
        if body.start is None or body.end is None:
            raise Unprocessable("partial_data_provided needs start and end: the narrower period provided")
        s, e = _parse("start", body.start), _parse("end", body.end)
        if not (req.start_ms <= s < e <= req.end_ms) or (s, e) == (req.start_ms, req.end_ms):
            raise Unprocessable(f"{fmt_ts(s)}..{fmt_ts(e)} is not a strict sub-period of the request's "
                                f"{fmt_ts(req.start_ms)}..{fmt_ts(req.end_ms)}")
        max_days = settings.max_period_days[req.ground]
        if e - s > max_days * DAY_MS:
            raise Conflict(f"{fmt_ts(s)}..{fmt_ts(e)} is still longer than the {max_days} days allowed "
                           f"for ground {req.ground}")
        _check_narrowing(req, s, e, settings)
        approved = (s, e)
    else:
        if body.start is not None or body.end is not None:
            raise Unprocessable(f"start/end narrow the period and go only with partial_data_provided, "
                                f"not {body.outcome}")
        if body.outcome == "data_provided":
            if req.too_broad:
                raise Conflict(f"access request {req.id} is too broad for ground {req.ground} "
                               f"({settings.max_period_days[req.ground]} days at most): decide "
                               f"partial_data_provided with a narrower period, or rejected_too_broad")
            approved = (req.start_ms, req.end_ms)
    now = clock()
    bound = _bind(session, req, *approved) if approved else None
    _guarded_update(session, req, f"access request {req.id} was decided or changed meanwhile",
                    status="decided", outcome=body.outcome, decision_reason=body.reason,
                    approved_start_ms=approved[0] if approved else None,
                    approved_end_ms=approved[1] if approved else None,
                    decided_by=user.id, decided_ms=now, expires_ms=now + settings.approval_ttl_s * 1000,
                    guidance_version=settings.guidance_version, bound_assignments_json=bound)
    audit.append(session, action="request.decide", actor=user, request_id=req.id, subject_id=req.subject_id,
                 ground=req.ground, justification_ref=_ref(req), now_ms=now,
                 detail={"outcome": body.outcome, "approved_start": fmt_ts(req.approved_start_ms),
                         "approved_end": fmt_ts(req.approved_end_ms), "expires": fmt_ts(req.expires_ms),
                         "guidance_version": settings.guidance_version,
                         "assignments_sha256": None if bound is None else _sha256(bound)})
    out = _public(req, settings)
    commit(session, audit)
    return out


@router.post("/{request_id}/withdraw", operation_id="withdraw_access_request", response_model=AccessRequestPublic)
def withdraw_access_request(request_id: RequestId, session: SessionDep, user: CurrentUser, audit: AuditDep,
                            settings: SettingsDep, clock: ClockDep) -> AccessRequestPublic:
    """Withdraw a pending request.

    Roles: caseworker, requester; only the user who made the request (403),
    only while it is pending (409).
    """
    req = _get(session, request_id)
    if req.requester_id != user.id:
        raise Forbidden(f"only the user who made access request {req.id} may withdraw it")
    _require_pending(req)
    now = clock()
    _guarded_update(session, req, f"access request {req.id} was decided or changed meanwhile",
                    status="withdrawn", withdrawn_ms=now)
    audit.append(session, action="request.withdraw", actor=user, request_id=req.id, subject_id=req.subject_id,
                 ground=req.ground, justification_ref=_ref(req), now_ms=now)
    out = _public(req, settings)
    commit(session, audit)
    return out


@router.get("/{request_id}/extract", operation_id="download_extract",
            response_class=Response,
            responses={200: {"description": "the extract file; header X-Extract-SHA256 is its SHA-256",
                             "content": {"application/geo+json": {}, "text/csv": {}, "application/gpx+xml": {},
                                         "application/json": {}}}})
def download_extract(request_id: RequestId, request: Request, session: SessionDep, user: CurrentUser, audit: AuditDep,
                     settings: SettingsDep, clock: ClockDep,
                     format: Literal["geojson", "csv", "gpx", "json"] | None = None) -> Response:
    """Download the approved period of an approved request.

    Roles: caseworker, requester; only the user who made the request (403).
    Only after data_provided or partial_data_provided (409), only before the
    approval expires (410), only the approved period, only once it has
    ended (409), and only from the assignments the decision was bound to
    (409 for a decision made before decisions were bound). Formats: trail
    geojson (default), csv, gpx; attendance json (default), csv.
    """
    from api.access.extracts import ExtractError, attendance_extract, trail_extract

    req = _get(session, request_id)
    if req.requester_id != user.id:
        raise Forbidden(f"only the user who made access request {req.id} may download its extract")
    if req.status != "decided" or req.outcome not in DATA_OUTCOMES:
        state = req.outcome or req.status
        raise Conflict(f"access request {req.id} has no approved data ({state})")
    now = clock()
    if req.expires_ms is not None and now >= req.expires_ms:
        raise Gone(f"the approval of access request {req.id} expired at {fmt_ts(req.expires_ms)}")
    if req.bound_assignments_json is None:
        raise Conflict(f"access request {req.id} was approved before approvals were bound to the wearer's "
                       f"assignments, so which device it covers is not known: ask for a new decision")
    if req.approved_end_ms > now:
        raise Conflict(f"the approved period of access request {req.id} ends at {fmt_ts(req.approved_end_ms)}, "
                       f"after now ({fmt_ts(now)}): an extract covers only a period that has ended")
    allowed = TRAIL_FORMATS if req.kind == "trail" else ATTENDANCE_FORMATS
    fmt = format or allowed[0]
    if fmt not in allowed:
        raise Unprocessable(f"format {fmt!r} is not available for a {req.kind} request: use {' or '.join(allowed)}")
    # fixes received by the service are read from the store: move them there first, with this
    # request's transaction ended (the flush writes through its own, and SQLite has one writer)
    session.commit()
    request.app.state.stream.flush()
    assignments = _bound(req)  # as at the decision: later assignment changes cannot redirect the extract
    zone_ids = sorted({z for a in assignments for z in a.zones})
    zones = load_zones_from_db(session, zone_ids)
    kwargs = dict(subject_id=req.subject_id, assignments=assignments, zones=zones, policy=Policy(),
                  start_ms=req.approved_start_ms, end_ms=req.approved_end_ms, fmt=fmt)
    try:
        if req.kind == "trail":
            ex = trail_extract(settings.home, **kwargs)
        else:
            ex = attendance_extract(settings.home, **kwargs)
    except ExtractError as exc:
        raise Unprocessable(str(exc)) from None
    audit.append(session, action="extract.download", actor=user, request_id=req.id, subject_id=req.subject_id,
                 ground=req.ground, justification_ref=_ref(req), extract_sha256=ex.sha256, now_ms=now,
                 detail={"format": fmt, "n_items": ex.n_items, "start": fmt_ts(req.approved_start_ms),
                         "end": fmt_ts(req.approved_end_ms),
                         "assignments_sha256": _sha256(req.bound_assignments_json)})
    commit(session, audit)
    return Response(content=ex.content, media_type=ex.media_type,
                    headers={"Content-Disposition": f'attachment; filename="{ex.filename}"',
                             "X-Extract-SHA256": ex.sha256})

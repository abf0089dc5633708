"""`/v1/access-requests`: ask for a wearer's trail or attendance, confirm an
external requester's identity, decide, withdraw, read, and download the
approved extract. The rules and audit entries are `api.access.requests`
(the console calls the same functions); this module is the HTTP edge.

The rules (governance.md) and how an approval binds the extract to the
wearer's assignments are written once, in `api.access.requests`.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from api.access.requests import (DATA_OUTCOMES, NewRequest, Narrowing, RequestError, check_identity as identity_checked,
                                 check_period, create_request, decide_request, download_extract as service_download,
                                 extend_request, list_requests, read_request, withdraw_request)
from api.access.extracts import ATTENDANCE_FORMATS, TRAIL_FORMATS
from api.access.request_input import ExtensionCreate
from api.access.subject_access import exemptions_of
from api.http.deps import AuditDep, ClockDep, CurrentUser, SessionDep, SettingsDep, authorize, commit
from api.http.guard import GuardedRoute
from api.http.errors import ApiError, Conflict, Forbidden, Gone, NotFound, Unprocessable
from api.db.models import AccessRequest
from api.http.schemas import (AccessRequestCreate, AccessRequestList, AccessRequestPublic, DecisionCreate, Ground,
                       IdentityCheckCreate, Kind, fmt_ts, parse_ts)
from api.settings import Settings

router = APIRouter(prefix="/access-requests", tags=["access requests"], dependencies=[Depends(authorize)], route_class=GuardedRoute)

RequestId = Annotated[int, Path(ge=1, le=2**31 - 1, description="access request id")]
__all__ = ["router", "DATA_OUTCOMES", "TRAIL_FORMATS", "ATTENDANCE_FORMATS"]


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
        withdrawn_at=fmt_ts(req.withdrawn_ms), version=req.version, exemptions=exemptions_of(req),
        extended_at=fmt_ts(req.extended_ms))


_ERRORS: dict[int, type[ApiError]] = {403: Forbidden, 404: NotFound, 409: Conflict, 410: Gone, 422: Unprocessable}


@contextmanager
def _answered() -> Iterator[None]:
    """The service's `RequestError` as the API's error of the same status."""
    try:
        yield
    except RequestError as exc:
        raise _ERRORS[exc.status](str(exc)) from None


def _parse(name: str, value: str) -> int:
    try:
        return parse_ts(value)
    except ValueError as exc:
        raise Unprocessable(f"{name}: {exc}") from None


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
    with _answered():
        check_period(start_ms, end_ms, now)
    respond_by_ms = _parse("respond_by", body.respond_by) if body.respond_by is not None else None
    new = NewRequest(subject_id=body.subject_id, kind=body.kind, ground=body.ground, start_ms=start_ms,
                     end_ms=end_ms, justification=body.justification, necessity=body.necessity,
                     reference=body.reference, urgency=body.urgency, respond_by_ms=respond_by_ms)
    with _answered():
        req = create_request(session, audit, user, settings, new, now_ms=now)
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
    rows = list_requests(session, audit, user, now_ms=clock(), status=status, subject_id=subject_id, ground=ground,
                         kind=kind, limit=limit, offset=offset)
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
    with _answered():
        req = read_request(session, audit, user, request_id, now_ms=clock())
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
    with _answered():
        req = identity_checked(session, audit, user, request_id, body.note, now_ms=clock())
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
    start = _parse("start", body.start) if body.start is not None else None
    end = _parse("end", body.end) if body.end is not None else None
    with _answered():
        req = decide_request(session, audit, user, settings, request_id,
                             Narrowing(outcome=body.outcome, reason=body.reason, start_ms=start, end_ms=end,
                                       exemptions=tuple((e.part, e.reason) for e in body.exemptions)),
                             now_ms=clock(), identity_path=f"POST /v1/access-requests/{request_id}/identity-check")
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
    with _answered():
        req = withdraw_request(session, audit, user, request_id, now_ms=clock())
    out = _public(req, settings)
    commit(session, audit)
    return out

@router.post("/{request_id}/extend", operation_id="extend_access_request", response_model=AccessRequestPublic)
def extend_access_request(request_id: RequestId, body: ExtensionCreate, session: SessionDep, user: CurrentUser,
                          audit: AuditDep, settings: SettingsDep, clock: ClockDep) -> AccessRequestPublic:
    """Extend a subject access request's deadline from one month after receipt to three, once, with a reason
    (UK GDPR art. 12(3): complex or numerous requests; the wearer must be told within the first month).

    Roles: approver. 422 for a request that is not kind sar; 409 when extended already or withdrawn.
    """
    with _answered():
        req = extend_request(session, audit, user, request_id, body.reason, now_ms=clock())
    out = _public(req, settings)
    commit(session, audit)
    return out


@router.get("/{request_id}/extract", operation_id="download_extract",
            response_class=Response,
            responses={200: {"description": "the extract file; header X-Extract-SHA256 is its SHA-256",
                             "content": {"application/geo+json": {}, "text/csv": {}, "application/gpx+xml": {},
                                         "application/json": {}, "application/zip": {}}}})
def download_extract(request_id: RequestId, request: Request, session: SessionDep, user: CurrentUser, audit: AuditDep,
                     settings: SettingsDep, clock: ClockDep,
                     format: Literal["geojson", "csv", "gpx", "json", "zip"] | None = None) -> Response:
    """Download the approved period of an approved request.

    Roles: caseworker, requester; only the user who made the request (403).
    Only after data_provided or partial_data_provided (409), only before the
    approval expires (410), only the approved period, only once it has
    ended (409), and only from the assignments the decision was bound to
    (409 for a decision made before decisions were bound). Formats: trail
    geojson (default), csv, gpx; attendance json (default), csv; subject access
    (kind sar) zip: the wearer's package (fixes as CSV and GeoJSON, records
    and casework, every consultation and disclosure, the exemptions applied).
    """
    with _answered():
        _, ex = service_download(session, audit, user, settings, request_id, format, now_ms=clock(),
                                 flush_store=request.app.state.stream.flush)
    commit(session, audit)
    return Response(content=ex.content, media_type=ex.media_type,
                    headers={"Content-Disposition": f'attachment; filename="{ex.filename}"',
                             "X-Extract-SHA256": ex.sha256})

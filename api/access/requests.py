"""Access requests: ask, confirm an external requester's identity, decide,
withdraw, read, and make the approved extract. The API
(`api.http.routers.access_requests`) and the console (`api.web.pages.requests`)
both call these, so a rule holds and an audit entry reads the same whichever
way the call came in (only the entry's ``channel`` differs: the caller passes
the audit log as its way in sees it, `api.audit.log.AuditLog.via`).

The rules (governance.md): one of five lawful grounds; justification and
necessity in words; the period inside the wearer's monitoring and already
ended (an extract is a record of the past, never a live feed); a bail-breach
request names the breach; a period longer than the ground's maximum is
accepted but flagged too broad, and cannot be approved without narrowing;
"partial data" removes at least `min_narrowing_fraction` of the period asked
for; external requesters' identity is confirmed before a decision; the
approver is never the requester, compared as persons, not accounts; an
approval expires; every call is audited. The caller commits each change with
its audit entry (`api.audit.log.commit_with_checkpoint`).

An approval of data is bound to the wearer's assignments (device, period,
zones) as they stood when it was decided, clipped to the approved period;
the extract is built from exactly those, so changing assignments afterwards
can never point an approved extract at another wearer's device.

Errors are `RequestError`s carrying the HTTP status the API answers with;
each way in turns them into its own answer.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from geofence.model import Assignment
from trails.timestamps import DAY_MS, format_ms

from api.access.extracts import (ATTENDANCE_FORMATS, TRAIL_FORMATS, Extract, ExtractError, attendance_extract,
                                 clip_assignments, trail_extract)
from api.access.subject_access import SAR_PARTS, sar_deadline, sar_package
from api.db.models import AccessRequest, BreachRow, User
from api.service.detections import load_assignments, load_zones_from_db
from api.service.stream.detector_state import home_policy
from api.settings import Settings

__all__ = ["RequestError", "NotFoundError", "ForbiddenError", "ConflictError", "GoneError", "InvalidError",
           "NewRequest", "Narrowing", "DATA_OUTCOMES", "formats_for", "justification_ref", "check_period",
           "is_too_broad", "create_request", "list_requests", "read_request", "check_identity", "decide_request",
           "withdraw_request", "download_extract", "own_request", "needs_identity_check"]

DATA_OUTCOMES = frozenset({"data_provided", "partial_data_provided"})


class RequestError(Exception):
    """A call on an access request that cannot be done; `status` is the API's answer."""

    status = 400


class NotFoundError(RequestError):
    status = 404


class ForbiddenError(RequestError):
    status = 403


class ConflictError(RequestError):
    status = 409


class GoneError(RequestError):
    status = 410


class InvalidError(RequestError):
    status = 422


@dataclass(frozen=True)
class NewRequest:
    """A request as asked for, times already epoch ms UTC."""

    subject_id: str
    kind: str
    ground: str
    start_ms: int
    end_ms: int
    justification: str
    necessity: str
    reference: str | None = None
    urgency: str = "routine"
    respond_by_ms: int | None = None


@dataclass(frozen=True)
class Narrowing:
    """A decision: the outcome, its reason, and for partial data the period provided."""

    outcome: str
    reason: str
    start_ms: int | None = None
    end_ms: int | None = None
    exemptions: tuple[tuple[str, str], ...] = ()  # sar only: (part withheld, reason)


def _fmt(ms: int | None) -> str | None:
    return None if ms is None else format_ms(ms)


def formats_for(kind: str) -> tuple[str, ...]:
    """The extract formats of a request kind; the first is the default."""
    return {"trail": TRAIL_FORMATS, "sar": ("zip",)}.get(kind, ATTENDANCE_FORMATS)


def justification_ref(req: AccessRequest) -> str:
    """What the audit log records as the justification reference: the request itself
    (its free-text case reference stays in `access_requests`, where the request id
    leads), or, for a bail breach, the breach id the request was checked against."""
    if req.ground == "bail_breach" and req.reference:
        return f"breach:{req.reference}"
    return f"request:{req.id}"


def _get(session: Session, request_id: int) -> AccessRequest:
    req = session.get(AccessRequest, request_id)
    if req is None:
        raise NotFoundError(f"access request {request_id} not found")
    return req


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
        raise ConflictError(conflict)
    session.refresh(req)


def _require_pending(req: AccessRequest) -> None:
    if req.status != "pending":
        raise ConflictError(f"access request {req.id} is {req.status}, not pending")


def own_request(session: Session, req: AccessRequest, user: User) -> bool:
    """True when `user` made `req` from this or any other account of the same person (`User.person`)."""
    if req.requester_id == user.id:
        return True
    requester = session.get(User, req.requester_id)
    return requester is not None and requester.person == user.person


def _not_own(session: Session, req: AccessRequest, user: User, what: str) -> None:
    """The two-person rule, by person: the account that made the request, and
    any other account of the same person (`User.person`: a revoked caseworker
    back as an approver), may not act on it."""
    if req.requester_id == user.id:
        raise ForbiddenError(f"the approver is never the requester: user {user.id} made access request {req.id} "
                             f"and may not {what} it")
    requester = session.get(User, req.requester_id)
    if requester is not None and requester.person == user.person:
        raise ForbiddenError(f"the approver is never the requester: user {user.id} ({user.name!r}) is the same "
                             f"person as user {requester.id} ({requester.name!r}), who made access request "
                             f"{req.id}, and may not {what} it")


def needs_identity_check(session: Session, req: AccessRequest) -> bool:
    """An external (requester-role) request whose requester's identity is not confirmed yet."""
    requester = session.get(User, req.requester_id)
    return requester is not None and requester.role == "requester" and req.identity_checked_ms is None


def _seconds(ms: int) -> str:
    return str(ms // 1000) if ms % 1000 == 0 else str(ms / 1000)


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
    raise InvalidError(f"{format_ms(s)}..{format_ms(e)} removes {_seconds(removed)} s of the {_seconds(asked)} s "
                       f"asked for; partial_data_provided must remove at least {float(share * 100):g}% of it "
                       f"({_seconds(math.ceil(asked * share))} s, setting min_narrowing_fraction): {instead}")


def _bind(session: Session, req: AccessRequest, start_ms: int, end_ms: int) -> str:
    """The wearer's assignments now, clipped to the approved period, as the JSON stored with the decision."""
    bound = clip_assignments(load_assignments(session, req.subject_id), req.subject_id, start_ms, end_ms)
    return json.dumps([{"device_id": a.device_id, "start_ms": a.start_ms, "end_ms": a.end_ms, "zones": list(a.zones)}
                       for a in bound], sort_keys=True, separators=(",", ":"))


def _bound(req: AccessRequest) -> tuple[Assignment, ...]:
    """The assignments the decision was bound to (`_bind`)."""
    return tuple(Assignment(req.subject_id, b["device_id"], int(b["start_ms"]), int(b["end_ms"]), tuple(b["zones"]))
                 for b in json.loads(req.bound_assignments_json))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- asking

def is_too_broad(settings: Settings, ground: str, start_ms: int, end_ms: int) -> bool:
    """Longer than the ground's maximum (`max_period_days`): accepted, flagged, never approved as asked."""
    return (end_ms - start_ms) > settings.max_period_days[ground] * DAY_MS


def check_period(start_ms: int, end_ms: int, now_ms: int) -> None:
    """The checks of a period that need nothing about the wearer: start before
    end, and ended by now. (The console runs them before its confirm step,
    which therefore reveals nothing about who is monitored.)"""
    if start_ms >= end_ms:
        raise InvalidError(f"start {format_ms(start_ms)} must be before end {format_ms(end_ms)}")
    if end_ms > now_ms:
        raise InvalidError(f"period {format_ms(start_ms)}..{format_ms(end_ms)} has not ended (now is "
                           f"{format_ms(now_ms)}): ask for a period that has ended; an extract is never a live feed")


def create_request(session: Session, audit, user: User, settings: Settings, new: NewRequest, *,
                   now_ms: int) -> AccessRequest:
    """Record `new` as a pending request of `user`, audited as ``request.create``.

    The period must lie inside the wearer's monitoring (422; 404 for a wearer
    with no monitoring record); a ``bail_breach`` request names, in
    `reference`, a breach of that wearer overlapping the period; a period
    longer than the ground's maximum is kept with ``too_broad``."""
    start_ms, end_ms = new.start_ms, new.end_ms
    check_period(start_ms, end_ms, now_ms)
    if new.kind == "sar" and new.ground != "sar_or_legal":
        raise InvalidError("a subject access request (kind sar) is made on ground sar_or_legal")
    periods = _monitoring_periods(session, new.subject_id)
    if not periods:
        raise NotFoundError(f"subject {new.subject_id!r} has no monitoring record")
    if not any(s <= start_ms and end_ms <= e for s, e in periods):
        spans = ", ".join(f"{format_ms(s)}..{'open' if e == float('inf') else format_ms(int(e))}" for s, e in periods)
        raise InvalidError(f"period {format_ms(start_ms)}..{format_ms(end_ms)} is not inside the monitoring of "
                           f"subject {new.subject_id!r} ({spans})")
    if new.ground == "bail_breach":
        if not new.reference:
            raise InvalidError("ground bail_breach needs reference: the breach_id of the breach concerned")
        breach = session.get(BreachRow, new.reference)
        if (breach is None or breach.subject_id != new.subject_id or breach.kind != "breach"
                or not (breach.start_ms < end_ms and breach.end_ms > start_ms)):
            raise InvalidError(f"reference {new.reference!r} is not a breach of subject {new.subject_id!r} "
                               f"overlapping {format_ms(start_ms)}..{format_ms(end_ms)}")
    req = AccessRequest(requester_id=user.id, subject_id=new.subject_id, kind=new.kind, ground=new.ground,
                        start_ms=start_ms, end_ms=end_ms, justification=new.justification,
                        necessity=new.necessity, reference=new.reference, urgency=new.urgency,
                        respond_by_ms=sar_deadline(now_ms) if new.kind == "sar" else new.respond_by_ms,
                        too_broad=new.kind != "sar" and is_too_broad(settings, new.ground, start_ms, end_ms),
                        status="pending", created_ms=now_ms, version=1)
    session.add(req)
    session.flush()
    audit.append(session, action="request.create", actor=user, request_id=req.id, subject_id=req.subject_id,
                 ground=req.ground, justification_ref=justification_ref(req), now_ms=now_ms,
                 detail={"kind": req.kind, "start": format_ms(start_ms), "end": format_ms(end_ms),
                         "too_broad": req.too_broad, "urgency": req.urgency})
    return req


# ---------------------------------------------------------------- reading

def list_requests(session: Session, audit, user: User, *, now_ms: int, status: str | None = None,
                  subject_id: str | None = None, ground: str | None = None, kind: str | None = None,
                  limit: int = 100, offset: int = 0, by_urgency: bool = False,
                  only_mine: bool = False) -> list[AccessRequest]:
    """Requests, newest first (or, `by_urgency`, urgent first, then by respond-by,
    then oldest first: an approver's inbox), audited as ``request.list`` (with
    the ids listed, so the entry shows what was seen whatever the view).
    Requesters see only their own; `only_mine` narrows anyone else's list to theirs."""
    q = select(AccessRequest)
    if by_urgency:
        q = q.order_by((AccessRequest.urgency != "urgent"), AccessRequest.respond_by_ms.is_(None),
                       AccessRequest.respond_by_ms, AccessRequest.created_ms, AccessRequest.id)
    else:
        q = q.order_by(AccessRequest.id.desc())
    if user.role == "requester" or only_mine:
        q = q.where(AccessRequest.requester_id == user.id)
    for col, value in ((AccessRequest.status, status), (AccessRequest.subject_id, subject_id),
                       (AccessRequest.ground, ground), (AccessRequest.kind, kind)):
        if value is not None:
            q = q.where(col == value)
    rows = list(session.scalars(q.limit(limit).offset(offset)))
    audit.append(session, action="request.list", actor=user, subject_id=subject_id, ground=ground, now_ms=now_ms,
                 detail={"status": status, "kind": kind, "limit": limit, "offset": offset,
                         "request_ids": [r.id for r in rows]})
    return rows


def read_request(session: Session, audit, user: User, request_id: int, *, now_ms: int) -> AccessRequest:
    """One request, audited as ``request.read``; a requester reads only their own (403)."""
    req = _get(session, request_id)
    if user.role == "requester" and req.requester_id != user.id:
        raise ForbiddenError(f"requesters may read only their own requests; {request_id} is not yours")
    audit.append(session, action="request.read", actor=user, request_id=req.id, subject_id=req.subject_id,
                 ground=req.ground, justification_ref=justification_ref(req), now_ms=now_ms)
    return req


# ---------------------------------------------------------------- deciding

def check_identity(session: Session, audit, user: User, request_id: int, note: str, *,
                   now_ms: int) -> AccessRequest:
    """Record that the requester's identity was confirmed (never by the requester;
    pending requests only; once), audited as ``request.identity_check``."""
    req = _get(session, request_id)
    _not_own(session, req, user, "confirm the identity on")
    _require_pending(req)
    if req.identity_checked_ms is not None:
        raise ConflictError(f"identity on access request {req.id} was already confirmed at "
                            f"{format_ms(req.identity_checked_ms)}")
    _guarded_update(session, req, f"access request {req.id} changed meanwhile: read it again",
                    identity_checked_by=user.id, identity_checked_ms=now_ms, identity_check_note=note)
    audit.append(session, action="request.identity_check", actor=user, request_id=req.id,
                 subject_id=req.subject_id, ground=req.ground, justification_ref=justification_ref(req),
                 now_ms=now_ms)
    return req


def _approved_period(req: AccessRequest, d: Narrowing, settings: Settings) -> tuple[int, int] | None:
    if d.outcome == "partial_data_provided":
        if d.start_ms is None or d.end_ms is None:
            raise InvalidError("partial_data_provided needs start and end: the narrower period provided")
        s, e = d.start_ms, d.end_ms
        if not (req.start_ms <= s < e <= req.end_ms) or (s, e) == (req.start_ms, req.end_ms):
            raise InvalidError(f"{format_ms(s)}..{format_ms(e)} is not a strict sub-period of the request's "
                               f"{format_ms(req.start_ms)}..{format_ms(req.end_ms)}")
        max_days = settings.max_period_days[req.ground]
        if e - s > max_days * DAY_MS:
            raise ConflictError(f"{format_ms(s)}..{format_ms(e)} is still longer than the {max_days} days allowed "
                                f"for ground {req.ground}")
        _check_narrowing(req, s, e, settings)
        return s, e
    if d.start_ms is not None or d.end_ms is not None:
        raise InvalidError(f"start/end narrow the period and go only with partial_data_provided, not {d.outcome}")
    if d.outcome == "data_provided":
        if req.too_broad:
            raise ConflictError(f"access request {req.id} is too broad for ground {req.ground} "
                                f"({settings.max_period_days[req.ground]} days at most): decide "
                                f"partial_data_provided with a narrower period, or rejected_too_broad")
        return req.start_ms, req.end_ms
    return None


def decide_request(session: Session, audit, user: User, settings: Settings, request_id: int, d: Narrowing, *,
                   now_ms: int, identity_path: str) -> AccessRequest:
    """Decide a pending request (the API's `decide_access_request` states the
    rules), audited as ``request.decide``. `identity_path` is where the caller's
    way in confirms an identity, named in the 409 when that is still to do."""
    req = _get(session, request_id)
    _not_own(session, req, user, "decide")
    _require_pending(req)
    if needs_identity_check(session, req):
        raise ConflictError(f"access request {req.id} is from an external requester: confirm their identity "
                            f"({identity_path}) before deciding")
    approved = _approved_period(req, d, settings)
    exemptions = _exemptions(req, d)
    bound = _bind(session, req, *approved) if approved else None
    _guarded_update(session, req, f"access request {req.id} was decided or changed meanwhile",
                    status="decided", outcome=d.outcome, decision_reason=d.reason,
                    approved_start_ms=approved[0] if approved else None,
                    approved_end_ms=approved[1] if approved else None,
                    decided_by=user.id, decided_ms=now_ms, expires_ms=now_ms + settings.approval_ttl_s * 1000,
                    guidance_version=settings.guidance_version, bound_assignments_json=bound,
                    exemptions_json=exemptions)
    audit.append(session, action="request.decide", actor=user, request_id=req.id, subject_id=req.subject_id,
                 ground=req.ground, justification_ref=justification_ref(req), now_ms=now_ms,
                 detail={"outcome": d.outcome, "approved_start": _fmt(req.approved_start_ms),
                         "approved_end": _fmt(req.approved_end_ms), "expires": _fmt(req.expires_ms),
                         "guidance_version": settings.guidance_version,
                         "assignments_sha256": None if bound is None else _sha256(bound)}
                 | ({"exemptions": [p for p, _ in d.exemptions]} if d.exemptions else {}))
    return req


def _exemptions(req: AccessRequest, d: Narrowing) -> str | None:
    """The exemptions as stored: only a subject access request has them, each a known part, once, with a
    reason (the package lists them)."""
    if not d.exemptions:
        return None
    if req.kind != "sar":
        raise InvalidError("exemptions go only with a subject access request (kind sar)")
    parts = [p for p, _ in d.exemptions]
    if len(set(parts)) != len(parts) or not set(parts) <= set(SAR_PARTS):
        raise InvalidError(f"each exemption names one of {', '.join(SAR_PARTS)}, once")
    return json.dumps([{"part": p, "reason": r} for p, r in d.exemptions])


def extend_request(session: Session, audit, user: User, request_id: int, reason: str, *,
                   now_ms: int) -> AccessRequest:
    """Extend a subject access request's deadline by two further months (once; UK GDPR art. 12(3)), with a
    reason, audited as ``request.extend``."""
    req = _get(session, request_id)
    if req.kind != "sar":
        raise InvalidError(f"access request {req.id} is not a subject access request: only those have a deadline "
                           f"to extend")
    if req.extended_ms is not None:
        raise ConflictError(f"access request {req.id} was extended already, at {format_ms(req.extended_ms)}")
    if req.status == "withdrawn":
        raise ConflictError(f"access request {req.id} was withdrawn")
    req.respond_by_ms, req.extended_ms, req.extension_reason = sar_deadline(req.created_ms, 3), now_ms, reason
    audit.append(session, action="request.extend", actor=user, request_id=req.id, subject_id=req.subject_id,
                 ground=req.ground, justification_ref=justification_ref(req), now_ms=now_ms,
                 detail={"respond_by": format_ms(req.respond_by_ms), "reason_sha256": _sha256(reason)})
    return req


def withdraw_request(session: Session, audit, user: User, request_id: int, *, now_ms: int) -> AccessRequest:
    """Withdraw a pending request: only its own requester, audited as ``request.withdraw``."""
    req = _get(session, request_id)
    if req.requester_id != user.id:
        raise ForbiddenError(f"only the user who made access request {req.id} may withdraw it")
    _require_pending(req)
    _guarded_update(session, req, f"access request {req.id} was decided or changed meanwhile",
                    status="withdrawn", withdrawn_ms=now_ms)
    audit.append(session, action="request.withdraw", actor=user, request_id=req.id, subject_id=req.subject_id,
                 ground=req.ground, justification_ref=justification_ref(req), now_ms=now_ms)
    return req


# ---------------------------------------------------------------- the extract

def _downloadable(session: Session, user: User, request_id: int, fmt: str | None, now_ms: int) -> tuple[AccessRequest, str]:
    req = _get(session, request_id)
    if req.requester_id != user.id:
        raise ForbiddenError(f"only the user who made access request {req.id} may download its extract")
    if req.status != "decided" or req.outcome not in DATA_OUTCOMES:
        raise ConflictError(f"access request {req.id} has no approved data ({req.outcome or req.status})")
    if req.expires_ms is not None and now_ms >= req.expires_ms:
        raise GoneError(f"the approval of access request {req.id} expired at {format_ms(req.expires_ms)}")
    if req.bound_assignments_json is None:
        raise ConflictError(f"access request {req.id} was approved before approvals were bound to the wearer's "
                            f"assignments, so which device it covers is not known: ask for a new decision")
    if req.approved_end_ms > now_ms:
        raise ConflictError(f"the approved period of access request {req.id} ends at "
                            f"{format_ms(req.approved_end_ms)}, after now ({format_ms(now_ms)}): an extract "
                            f"covers only a period that has ended")
    allowed = formats_for(req.kind)
    fmt = fmt or allowed[0]
    if fmt not in allowed:
        raise InvalidError(f"format {fmt!r} is not available for a {req.kind} request: use {' or '.join(allowed)}")
    return req, fmt


def download_extract(session: Session, audit, user: User, settings: Settings, request_id: int, fmt: str | None, *,
                     now_ms: int, flush_store: Callable[[], None]) -> tuple[AccessRequest, Extract]:
    """The approved period of an approved request as `fmt` (the kind's default
    when None), audited as ``extract.download`` with the file's SHA-256.

    Only the request's own requester (403); only approved data (409), before
    the approval expires (410), for an ended period (409), from the
    assignments the decision was bound to (409 without them). `flush_store`
    moves fixes the service holds into the store; it runs with this
    session's transaction ended (SQLite has one writer)."""
    req, fmt = _downloadable(session, user, request_id, fmt, now_ms)
    session.commit()
    flush_store()
    assignments = _bound(req)  # as at the decision: later assignment changes cannot redirect the extract
    zones = load_zones_from_db(session, sorted({z for a in assignments for z in a.zones}))
    policy = home_policy(settings.home)
    kwargs = dict(subject_id=req.subject_id, assignments=assignments, zones=zones, policy=policy,
                  start_ms=req.approved_start_ms, end_ms=req.approved_end_ms, fmt=fmt)
    try:
        if req.kind == "sar":  # the wearer's own package: fixes, records and casework, who saw their data
            ex = sar_package(session, settings.home, req, assignments=assignments, zones=zones, policy=policy,
                             pseudonyms=audit.pseudonyms(req.subject_id))
        elif req.kind == "trail":
            ex = trail_extract(settings.home, **kwargs)
        else:
            ex = attendance_extract(settings.home, **kwargs)
    except ExtractError as exc:
        raise InvalidError(str(exc)) from None
    audit.append(session, action="extract.download", actor=user, request_id=req.id, subject_id=req.subject_id,
                 ground=req.ground, justification_ref=justification_ref(req), extract_sha256=ex.sha256,
                 now_ms=now_ms,
                 detail={"format": fmt, "n_items": ex.n_items, "start": format_ms(req.approved_start_ms),
                         "end": format_ms(req.approved_end_ms),
                         "assignments_sha256": _sha256(req.bound_assignments_json)})
    return req, ex

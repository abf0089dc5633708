"""`/v1/admin`: the assignments and zones the service detects against, and
corrections to them.

A condition applies from when it is imposed (`api.service.conditions`): a change
takes effect from the moment it is made, the assignments it touches are
split there, and the past is judged against what held then. Changing the
past (an assignment that began before it was registered, a zone that was
wrong all along) is a correction: one admin proposes it with a reason, a
second admin (never the same person) approves it with a reason, and only
then does detection re-evaluate the past. Every change is validated as the
contract validates SUBJECTS.json and ZONES.geojson (422 with the loader's
message), written with its audit entry (zone versions by SHA-256; zone ids,
which may embed a wearer's id, by keyed reference only), and picked up by
continuous detection at its next pass.
"""
from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from trails.timestamps import format_ms

from api.service.conditions import (ConditionError, CorrectionNeeded, apply_correction,
                          canonical_sha256)
from api.http.deps import AuditDep, ClockDep, CurrentUser, SessionDep, authorize, commit
from api.service.admin_changes import apply_assignment, apply_zone, zone_ref, zone_status
from api.service.detections import bump_config_version
from api.http.errors import Conflict, Forbidden, NotFound, Unprocessable
from api.http.guard import GuardedRoute
from api.db.models import AssignmentRow, Correction, User, ZoneVersion
from api.http.schemas import AssignmentIn, AssignmentList, AssignmentPublic, Reason, ShortText, Timestamp, _In, parse_ts

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(authorize)], route_class=GuardedRoute)

CorrectionId = Annotated[int, Path(ge=1, le=2**31 - 1, description="correction id")]


_zone_ref = zone_ref


def _public(r: AssignmentRow) -> AssignmentPublic:
    return AssignmentPublic(subject_id=r.subject_id, device_id=r.device_id, start=format_ms(r.chain_start_ms),
                            segment_start=format_ms(r.start_ms),
                            end=None if r.end_ms is None else format_ms(r.end_ms), zones=json.loads(r.zones_json),
                            zone_versions=json.loads(r.zone_versions_json or "{}"))


def _policy_crs(request: Request) -> str:
    return request.app.state.stream.policy().crs


@router.get("/assignments", operation_id="list_assignments", response_model=AssignmentList)
def list_assignments(session: SessionDep, user: CurrentUser, audit: AuditDep, clock: ClockDep) -> AssignmentList:
    """Every assignment the service detects against, segment by segment: `start`
    names the assignment, `segment_start`..`end` the part that holds these zones
    at these versions.

    Roles: admin, auditor (the auditor reads everything).
    """
    rows = list(session.scalars(select(AssignmentRow).order_by(AssignmentRow.subject_id, AssignmentRow.start_ms)))
    audit.append(session, action="assignment.list", actor=user, now_ms=clock(), detail={"count": len(rows)})
    out = AssignmentList(items=[_public(r) for r in rows], count=len(rows))
    commit(session, audit)
    return out


@router.put("/assignments", operation_id="upsert_assignment", response_model=AssignmentList)
def upsert_assignment(body: AssignmentIn, request: Request, session: SessionDep, user: CurrentUser, audit: AuditDep,
                      clock: ClockDep) -> AssignmentList:
    """Add an assignment starting now or later, or change, from now on, the end or
    zones of the one with the same subject, device and start. Returns its segments.

    Roles: admin. A change that reaches into the past (a start, an end or a
    zone change before now) is a 409 naming the correction it needs; an
    overlap or an unknown zone is a 422.
    """
    from geofence.model import Assignment

    now = clock()
    new = Assignment(body.subject_id, body.device_id, parse_ts(body.start),
                     None if body.end is None else parse_ts(body.end), tuple(body.zones))
    try:
        change = apply_assignment(session, audit, user, new, now_ms=now)
    except CorrectionNeeded as exc:
        raise Conflict(str(exc)) from None
    except ConditionError as exc:
        raise Unprocessable(str(exc)) from None
    out = AssignmentList(items=[_public(r) for r in change.segments], count=len(change.segments))
    commit(session, audit)
    request.app.state.stream.notify()
    return out


@router.put("/zones/{zone_id}", operation_id="upsert_zone")
def upsert_zone(zone_id: Annotated[str, Path(min_length=1, max_length=200)],
                feature: Annotated[dict[str, Any], Body(description="a GeoJSON Feature in the contract's zone format")],
                request: Request, session: SessionDep, user: CurrentUser, audit: AuditDep, clock: ClockDep) -> dict:
    """Add a zone, or give the zone with this id a new version from now on
    (assignments that use it are split now; the past keeps the old version).

    Roles: admin. The feature's `id` must be the path's (or absent).
    """
    feature = dict(feature)
    if feature.setdefault("id", zone_id) != zone_id:
        raise Unprocessable(f"feature id {feature['id']!r} is not the path's zone id {zone_id!r}")
    now = clock()
    try:
        ch = apply_zone(session, audit, user, zone_id, feature, now_ms=now, crs=_policy_crs(request))
    except ConditionError as exc:
        raise Unprocessable(str(exc)) from None
    status = zone_status(ch)
    commit(session, audit)
    request.app.state.stream.notify()
    return {"zone_id": zone_id, "kind": ch.kind, "status": status, "version": ch.version, "sha256": ch.sha256,
            "effective_from": format_ms(now), "split_assignments": ch.split}


@router.get("/zones/{zone_id}/versions", operation_id="list_zone_versions")
def list_zone_versions(zone_id: Annotated[str, Path(min_length=1, max_length=200)], session: SessionDep,
                       user: CurrentUser, audit: AuditDep, clock: ClockDep) -> dict:
    """Every version of a zone: its feature, SHA-256, and from when it applied.

    Roles: admin, auditor.
    """
    rows = list(session.scalars(select(ZoneVersion).where(ZoneVersion.zone_id == zone_id)
                                .order_by(ZoneVersion.version)))
    if not rows:
        raise NotFound(f"zone {zone_id!r} not found")
    audit.append(session, action="zone.versions.read", actor=user, now_ms=clock(),
                 detail={"zone": _zone_ref(audit, zone_id), "versions": len(rows)})
    items = [{"version": r.version, "kind": r.kind, "sha256": r.sha256, "feature": json.loads(r.feature_json),
              "effective_from": None if r.effective_from_ms is None else format_ms(r.effective_from_ms),
              "created": format_ms(r.created_ms), "created_by": r.created_by, "correction_id": r.correction_id}
             for r in rows]
    commit(session, audit)
    return {"zone_id": zone_id, "versions": items}


# ---------------------------------------------------------------- corrections
class ChainRef(_In):
    subject_id: ShortText
    device_id: ShortText
    start: Timestamp


class CorrectionCreate(_In):
    """A change to conditions in the past, for a second admin to approve.

    ``zone``: `zone_id`, `feature` and `from` (the feature applies from then on,
    replacing later versions). ``assignment``: `assignment` (as SUBJECTS.json
    has it), and `replaces` naming the assignment it replaces, if any."""

    kind: Literal["assignment", "zone"]
    reason: Reason = Field(description="why the past must change: the evidence that it was otherwise")
    zone_id: ShortText | None = None
    feature: dict[str, Any] | None = None
    from_: Timestamp | None = Field(None, alias="from")
    assignment: AssignmentIn | None = None
    replaces: ChainRef | None = None


class CorrectionDecide(_In):
    approve: bool
    reason: Reason


class CorrectionPublic(BaseModel):
    id: int
    kind: str
    payload: dict
    sha256: str
    reason: str
    proposed_by: int
    proposed_at: str
    status: str
    decided_by: int | None
    decided_at: str | None
    decision_reason: str | None


def _correction(c: Correction) -> CorrectionPublic:
    return CorrectionPublic(id=c.id, kind=c.kind, payload=json.loads(c.payload_json), sha256=c.sha256,
                            reason=c.reason, proposed_by=c.proposed_by, proposed_at=format_ms(c.proposed_ms),
                            status=c.status, decided_by=c.decided_by,
                            decided_at=None if c.decided_ms is None else format_ms(c.decided_ms),
                            decision_reason=c.decision_reason)


def _payload(body: CorrectionCreate, now: int) -> dict:
    if body.kind == "zone":
        if body.zone_id is None or body.feature is None or body.from_ is None:
            raise Unprocessable("a zone correction needs zone_id, feature and from")
        if parse_ts(body.from_) >= now:
            raise Unprocessable(f"from {body.from_!r} is not in the past: change the zone with PUT "
                                f"/v1/admin/zones/{{zone_id}}")
        return {"zone_id": body.zone_id, "feature": {**body.feature, "id": body.zone_id}, "from": body.from_}
    if body.assignment is None:
        raise Unprocessable("an assignment correction needs assignment (and replaces, if it replaces one)")
    return {"assignment": body.assignment.model_dump(),
            "replaces": None if body.replaces is None else body.replaces.model_dump()}


@router.post("/corrections", operation_id="propose_correction", status_code=201, response_model=CorrectionPublic)
def propose_correction(body: CorrectionCreate, request: Request, session: SessionDep, user: CurrentUser,
                       audit: AuditDep, clock: ClockDep) -> CorrectionPublic:
    """Propose a change to conditions in the past; nothing changes until a second
    admin approves it.

    Roles: admin.
    """
    now = clock()
    payload = _payload(body, now)
    # validated now as well as when applied: a second admin is asked to approve only what can be applied
    check = Correction(kind=body.kind, payload_json=json.dumps(payload, sort_keys=True), sha256="", reason=body.reason,
                       proposed_by=user.id, proposed_ms=now, status="pending")
    with session.begin_nested() as trial:
        try:
            apply_correction(session, check, now_ms=now, crs=_policy_crs(request))
        except ConditionError as exc:
            trial.rollback()
            raise Unprocessable(str(exc)) from None
        trial.rollback()
    check.sha256 = canonical_sha256(payload)
    session.add(check)
    session.flush()
    subject = payload["assignment"]["subject_id"] if body.kind == "assignment" else None
    audit.append(session, action="correction.propose", actor=user, subject_id=subject, now_ms=now,
                 justification_ref=f"correction:{check.id}",
                 detail={"correction_id": check.id, "kind": body.kind, "payload_sha256": check.sha256,
                         "zone": _zone_ref(audit, payload["zone_id"]) if body.kind == "zone" else None})
    out = _correction(check)
    commit(session, audit)
    return out


@router.get("/corrections", operation_id="list_corrections", response_model=list[CorrectionPublic])
def list_corrections(session: SessionDep, user: CurrentUser, audit: AuditDep, clock: ClockDep,
                     status: Literal["pending", "applied", "rejected"] | None = None) -> list[CorrectionPublic]:
    """Corrections, newest first.

    Roles: admin, auditor.
    """
    q = select(Correction).order_by(Correction.id.desc())
    if status is not None:
        q = q.where(Correction.status == status)
    rows = list(session.scalars(q.limit(500)))
    audit.append(session, action="correction.list", actor=user, now_ms=clock(),
                 detail={"status": status, "ids": [c.id for c in rows]})
    out = [_correction(c) for c in rows]
    commit(session, audit)
    return out


@router.post("/corrections/{correction_id}/decision", operation_id="decide_correction",
             response_model=CorrectionPublic)
def decide_correction(correction_id: CorrectionId, body: CorrectionDecide, request: Request, session: SessionDep,
                      user: CurrentUser, audit: AuditDep, clock: ClockDep) -> CorrectionPublic:
    """Approve (apply) or reject a pending correction.

    Roles: admin, never the person who proposed it (403). Only pending
    corrections (409).
    """
    c = session.get(Correction, correction_id)
    if c is None:
        raise NotFound(f"correction {correction_id} not found")
    proposer = session.get(User, c.proposed_by)
    if c.proposed_by == user.id or (proposer is not None and proposer.person == user.person):
        raise Forbidden(f"a correction needs a second admin: correction {c.id} was proposed by "
                        f"{proposer.name if proposer else c.proposed_by}")
    if c.status != "pending":
        raise Conflict(f"correction {c.id} is {c.status}, not pending")
    now = clock()
    c.status, c.decided_by, c.decided_ms, c.decision_reason = ("applied" if body.approve else "rejected"), user.id, \
        now, body.reason
    done: dict = {}
    if body.approve:
        try:
            done = apply_correction(session, c, now_ms=now, crs=_policy_crs(request))
        except ConditionError as exc:
            raise Unprocessable(f"correction {c.id} can no longer be applied: {exc}") from None
        bump_config_version(session)
    payload = json.loads(c.payload_json)
    audit.append(session, action=f"correction.{'apply' if body.approve else 'reject'}", actor=user,
                 subject_id=payload["assignment"]["subject_id"] if c.kind == "assignment" else None, now_ms=now,
                 justification_ref=f"correction:{c.id}",
                 detail={"correction_id": c.id, "kind": c.kind, "payload_sha256": c.sha256, "proposed_by": c.proposed_by,
                         "zone_sha256": done.get("sha256"), "zone_version": done.get("version")})
    out = _correction(c)
    commit(session, audit)
    if body.approve:
        request.app.state.stream.notify()
    return out

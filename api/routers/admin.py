"""`/v1/admin`: change the assignments and zones the service detects against.

Each change is validated as the contract validates SUBJECTS.json and
ZONES.geojson (the whole resulting set: overlapping assignments, unknown
zone ids and invalid geometry are refused with the loader's message, 422),
written in one transaction with its audit entry, and picked up by
continuous detection at its next pass, which re-evaluates only the
assignments the change touches (records no longer supported are withdrawn
with a reason).
"""
from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Request
from sqlalchemy import delete, select

from geofence.errors import SubjectsError, ZoneError
from geofence.subjects import parse_subjects
from geofence.zones import parse_zones
from trails.timestamps import format_ms

from ..deps import AuditDep, ClockDep, CurrentUser, SessionDep, authorize, commit
from ..detections import bump_config_version
from ..errors import Unprocessable
from ..models import AssignmentRow, ZoneRow
from ..schemas import AssignmentIn, AssignmentList, AssignmentPublic

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(authorize)])


def _public(r: AssignmentRow) -> AssignmentPublic:
    return AssignmentPublic(subject_id=r.subject_id, device_id=r.device_id, start=format_ms(r.start_ms),
                            end=None if r.end_ms is None else format_ms(r.end_ms), zones=json.loads(r.zones_json))


@router.get("/assignments", operation_id="list_assignments", response_model=AssignmentList)
def list_assignments(session: SessionDep, user: CurrentUser, audit: AuditDep, clock: ClockDep) -> AssignmentList:
    """Every assignment the service detects against.

    Roles: admin.
    """
    rows = list(session.scalars(select(AssignmentRow).order_by(AssignmentRow.subject_id, AssignmentRow.start_ms)))
    audit.append(session, action="assignment.list", actor=user, now_ms=clock(), detail={"count": len(rows)})
    out = AssignmentList(items=[_public(r) for r in rows], count=len(rows))
    commit(session, audit)
    return out


@router.put("/assignments", operation_id="upsert_assignment", response_model=AssignmentPublic)
def upsert_assignment(body: AssignmentIn, request: Request, session: SessionDep, user: CurrentUser, audit: AuditDep,
                      clock: ClockDep) -> AssignmentPublic:
    """Add an assignment, or change the end or zones of the one with the same
    subject, device and start.

    Roles: admin.
    """
    rows = list(session.scalars(select(AssignmentRow)))
    zone_ids = set(session.scalars(select(ZoneRow.zone_id)))
    entries = [{"subject_id": r.subject_id, "device_id": r.device_id, "start": format_ms(r.start_ms),
                "end": None if r.end_ms is None else format_ms(r.end_ms), "zones": json.loads(r.zones_json)}
               for r in rows]
    new = body.model_dump()
    try:
        (candidate,) = parse_subjects({"subjects": [new]}, zone_ids, source="assignment")
    except SubjectsError as exc:
        raise Unprocessable(str(exc)) from None
    same = [i for i, e in enumerate(entries) if (e["subject_id"], e["device_id"]) == (candidate.subject_id, candidate.device_id)
            and rows[i].start_ms == candidate.start_ms]
    action = "assignment.change" if same else "assignment.add"
    if same:
        entries[same[0]] = new
    else:
        entries.append(new)
    try:
        parsed = parse_subjects({"subjects": entries}, zone_ids, source="assignments")
    except SubjectsError as exc:
        raise Unprocessable(str(exc)) from None
    bump_config_version(session)
    session.execute(delete(AssignmentRow))
    session.add_all(AssignmentRow(subject_id=a.subject_id, device_id=a.device_id, start_ms=a.start_ms, end_ms=a.end_ms,
                                  zones_json=json.dumps(list(a.zones))) for a in parsed)
    audit.append(session, action=action, actor=user, subject_id=candidate.subject_id, now_ms=clock(),
                 detail={"start": format_ms(candidate.start_ms),
                         "end": None if candidate.end_ms is None else format_ms(candidate.end_ms),
                         "zones": list(candidate.zones)})
    out = AssignmentPublic(subject_id=candidate.subject_id, device_id=candidate.device_id,
                           start=format_ms(candidate.start_ms),
                           end=None if candidate.end_ms is None else format_ms(candidate.end_ms), zones=list(candidate.zones))
    commit(session, audit)
    request.app.state.stream.notify()
    return out


@router.put("/zones/{zone_id}", operation_id="upsert_zone")
def upsert_zone(zone_id: Annotated[str, Path(min_length=1, max_length=200)],
                feature: Annotated[dict[str, Any], Body(description="a GeoJSON Feature in the contract's zone format")],
                request: Request, session: SessionDep, user: CurrentUser, audit: AuditDep, clock: ClockDep) -> dict:
    """Add a zone, or replace the zone with this id.

    Roles: admin. The feature's `id` must be the path's (or absent).
    """
    feature = dict(feature)
    if feature.setdefault("id", zone_id) != zone_id:
        raise Unprocessable(f"feature id {feature['id']!r} is not the path's zone id {zone_id!r}")
    rows = {r.zone_id: r for r in session.scalars(select(ZoneRow))}
    features = [json.loads(r.feature_json) for zid, r in sorted(rows.items()) if zid != zone_id] + [feature]
    try:
        zones = parse_zones({"type": "FeatureCollection", "features": features}, source="zones")
    except ZoneError as exc:
        raise Unprocessable(str(exc)) from None
    (z,) = [z for z in zones if z.zone_id == zone_id]
    bump_config_version(session)
    text = json.dumps(feature, sort_keys=True)
    if zone_id in rows:
        rows[zone_id].kind, rows[zone_id].feature_json = z.kind, text
    else:
        session.add(ZoneRow(zone_id=zone_id, kind=z.kind, feature_json=text))
    audit.append(session, action="zone.change" if zone_id in rows else "zone.add", actor=user, now_ms=clock(),
                 detail={"zone_id": zone_id, "kind": z.kind})
    commit(session, audit)
    request.app.state.stream.notify()
    return {"zone_id": zone_id, "kind": z.kind, "status": "changed" if zone_id in rows else "added"}

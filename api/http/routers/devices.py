"""The device register and device faults over HTTP, and a caseworker's
decision on a breach inside a fault. Rules and audit entries:
`api.service.devices`."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field
from sqlalchemy import select

from api.access.request_input import In, Reason, ShortText, Timestamp, fmt_ts, parse_ts
from api.db.models import Device, DeviceFault
from api.http.deps import AuditDep, ClockDep, CurrentUser, SessionDep, authorize, commit
from api.http.errors import Unprocessable
from api.http.guard import GuardedRoute
from api.service.devices import DeviceError, DeviceIn, decide_fault, record_fault, register_device

router = APIRouter(tags=["casework"], dependencies=[Depends(authorize)], route_class=GuardedRoute)

DeviceId = Annotated[str, Path(min_length=1, max_length=200)]
BreachId = Annotated[str, Path(min_length=16, max_length=16, pattern="^[0-9a-f]{16}$")]


class DeviceBody(In):
    serial: ShortText
    model: ShortText
    batch: ShortText
    issued: Timestamp | None = None
    returned: Timestamp | None = None


class DevicePublic(BaseModel):
    device_id: str
    serial: str
    model: str
    batch: str
    issued: str | None
    returned: str | None


class FaultBody(In):
    device_id: ShortText | None = None
    batch: ShortText | None = Field(None, description="a whole batch (a recall) instead of one device")
    start: Timestamp
    end: Timestamp | None = None
    description: Reason


class FaultPublic(BaseModel):
    id: int
    device_id: str | None
    batch: str | None
    start: str
    end: str | None
    description: str


class FaultDecisionBody(In):
    decision: Literal["fault_confirmed", "fault_cleared"]
    reason: Reason


def _device(d: Device) -> DevicePublic:
    return DevicePublic(device_id=d.device_id, serial=d.serial, model=d.model, batch=d.batch,
                        issued=fmt_ts(d.issued_ms), returned=fmt_ts(d.returned_ms))


def _fault(f: DeviceFault) -> FaultPublic:
    return FaultPublic(id=f.id, device_id=f.device_id, batch=f.batch, start=fmt_ts(f.start_ms), end=fmt_ts(f.end_ms),
                       description=f.description)


def _ts(value: str | None) -> int | None:
    return None if value is None else parse_ts(value)


@router.put("/devices/{device_id}", operation_id="register_device", response_model=DevicePublic)
def put_device(device_id: DeviceId, body: DeviceBody, session: SessionDep, user: CurrentUser, audit: AuditDep,
               clock: ClockDep) -> DevicePublic:
    """Add a device to the register, or update it (serial, model, batch, issued, returned).

    Roles: admin.
    """
    try:
        row = register_device(session, audit, user, DeviceIn(device_id, body.serial, body.model, body.batch,
                                                              _ts(body.issued), _ts(body.returned)), now_ms=clock())
    except DeviceError as exc:
        raise Unprocessable(str(exc)) from None
    out = _device(row)
    commit(session, audit)
    return out


@router.get("/devices", operation_id="list_devices", response_model=list[DevicePublic])
def get_devices(session: SessionDep, user: CurrentUser) -> list[DevicePublic]:
    """The device register (no wearer in it).

    Roles: caseworker, approver, auditor, admin.
    """
    return [_device(d) for d in session.scalars(select(Device).order_by(Device.device_id))]


@router.post("/device-faults", operation_id="record_device_fault", response_model=FaultPublic, status_code=201)
def post_fault(body: FaultBody, session: SessionDep, user: CurrentUser, audit: AuditDep,
               clock: ClockDep) -> FaultPublic:
    """Record a fault on one device, or a batch recall, over a period (end null: still open). Every breach
    of a covered device inside the period is then suspected_equipment_fault.

    Roles: admin. 422 for both or neither of device_id and batch, or an unknown batch.
    """
    try:
        row = record_fault(session, audit, user, device_id=body.device_id, batch=body.batch,
                           start_ms=parse_ts(body.start), end_ms=_ts(body.end), description=body.description,
                           now_ms=clock())
    except DeviceError as exc:
        raise Unprocessable(str(exc)) from None
    out = _fault(row)
    commit(session, audit)
    return out


@router.get("/device-faults", operation_id="list_device_faults", response_model=list[FaultPublic])
def get_faults(session: SessionDep, user: CurrentUser) -> list[FaultPublic]:
    """Device faults and recalls, newest first.

    Roles: caseworker, approver, auditor, admin.
    """
    return [_fault(f) for f in session.scalars(select(DeviceFault).order_by(DeviceFault.id.desc()))]


@router.post("/breaches/{breach_id}/equipment-fault", operation_id="decide_equipment_fault")
def post_fault_decision(breach_id: BreachId, body: FaultDecisionBody, session: SessionDep, user: CurrentUser,
                        audit: AuditDep, clock: ClockDep) -> dict:
    """Decide a breach suspected of an equipment fault: fault_confirmed (it never counts toward
    escalation) or fault_cleared (it counts again), with a reason.

    Roles: caseworker. 422 for a breach inside no fault.
    """
    try:
        row = decide_fault(session, audit, user, breach_id, decision=body.decision, reason=body.reason,
                           now_ms=clock())
    except DeviceError as exc:
        raise Unprocessable(str(exc)) from None
    out = {"breach_id": breach_id, "fault_id": row.fault_id, "decision": row.decision, "decided": fmt_ts(row.decided_ms)}
    commit(session, audit)
    return out

"""The device register and device faults, and what a fault does to the
breaches it may explain. The inspection found 907 devices recalled for a
charging fault while their breaches still counted against the wearers.

A fault covers one device, or every device of a batch (a recall), over a
period. A breach whose device had a fault open at any moment of the breach
is `suspected_equipment_fault`: shown as such (API and console) and left
out of escalation counts until a caseworker decides: ``fault_confirmed``
(the fault explains it: it never counts) or ``fault_cleared`` (it did not:
it counts again). The mark is computed from the faults each time, so a
recall recorded late still reaches every breach it covers. The caller
commits each change with its audit entry.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from api.db.models import BreachRow, Device, DeviceFault, EquipmentFaultDecision, User
from api.service.casework_errors import CaseworkError
from trails.timestamps import format_ms

__all__ = ["DeviceError", "DeviceIn", "register_device", "record_fault", "fault_marks", "decide_fault",
           "not_counted_for_escalation", "FAULT_DECISIONS", "faults_by_device", "faults_worn"]

FAULT_DECISIONS = ("fault_confirmed", "fault_cleared")


class DeviceError(CaseworkError):
    """A register or fault call that cannot be done (422)."""


@dataclass(frozen=True)
class DeviceIn:
    device_id: str
    serial: str
    model: str
    batch: str
    issued_ms: int | None
    returned_ms: int | None


def register_device(session: Session, audit, user: User, d: DeviceIn, *, now_ms: int) -> Device:
    """Add or update a device in the register. Audited ``device.register``."""
    if d.returned_ms is not None and d.issued_ms is not None and d.returned_ms < d.issued_ms:
        raise DeviceError("a device cannot be returned before it was issued")
    row = session.get(Device, d.device_id) or Device(device_id=d.device_id)
    row.serial, row.model, row.batch, row.issued_ms, row.returned_ms = (d.serial, d.model, d.batch, d.issued_ms,
                                                                        d.returned_ms)
    session.add(row)
    audit.append(session, action="device.register", actor=user, now_ms=now_ms,
                 detail={"device_id": d.device_id, "batch": d.batch, "model": d.model})
    return row


def record_fault(session: Session, audit, user: User, *, device_id: str | None, batch: str | None, start_ms: int,
                 end_ms: int | None, description: str, now_ms: int) -> DeviceFault:
    """Record a fault on one device or a whole batch. Audited ``device.fault``."""
    if (device_id is None) == (batch is None):
        raise DeviceError("name exactly one of: a device, or a batch (a recall)")
    if end_ms is not None and end_ms <= start_ms:
        raise DeviceError("a fault's end must be after its start")
    if batch is not None and session.scalars(select(Device.device_id).where(Device.batch == batch)).first() is None:
        raise DeviceError(f"no device of batch {batch!r} is in the register")
    row = DeviceFault(device_id=device_id, batch=batch, start_ms=start_ms, end_ms=end_ms, description=description,
                      recorded_by=user.id, recorded_ms=now_ms)
    session.add(row)
    session.flush()
    audit.append(session, action="device.fault", actor=user, now_ms=now_ms,
                 detail={"fault_id": row.id, "device_id": device_id, "batch": batch, "start": format_ms(start_ms),
                         "end": None if end_ms is None else format_ms(end_ms)})
    return row


def faults_by_device(session: Session, device_ids: set[str]) -> dict[str, list[DeviceFault]]:
    """device_id -> the faults on it: its own, and its batch's (a recall)."""
    batches = dict(session.execute(select(Device.device_id, Device.batch).where(Device.device_id.in_(device_ids))).all())
    faults = session.scalars(select(DeviceFault).where(or_(DeviceFault.device_id.in_(device_ids),
                                                           DeviceFault.batch.in_(set(batches.values())))))
    out: dict[str, list[DeviceFault]] = {}
    for f in faults:
        for d in device_ids:
            if f.device_id == d or (f.batch is not None and batches.get(d) == f.batch):
                out.setdefault(d, []).append(f)
    return out


def fault_marks(session: Session, breaches: list[BreachRow]) -> dict[str, tuple[int, str]]:
    """breach_id -> (fault id, state) for each breach inside a fault: state ``suspected_equipment_fault``
    until decided, then the decision."""
    by_device = faults_by_device(session, {b.device_id for b in breaches})
    decided = {d.breach_id: d for d in session.scalars(select(EquipmentFaultDecision).where(
        EquipmentFaultDecision.breach_id.in_([b.breach_id for b in breaches])))}
    out = {}
    for b in breaches:
        hits = [f for f in by_device.get(b.device_id, []) if f.start_ms < b.end_ms
                and (f.end_ms is None or b.start_ms < f.end_ms)]
        if hits:
            fault = min(hits, key=lambda f: f.id)
            d = decided.get(b.breach_id)
            out[b.breach_id] = (fault.id, d.decision if d else "suspected_equipment_fault")
    return out


def faults_worn(session: Session, worn: list[tuple[str, int, int | None]], start_ms: int,
                end_ms: int) -> list[tuple[str, DeviceFault]]:
    """(device_id, fault) for each fault open during [start_ms, end_ms) on a device while it was worn
    (`worn`: (device_id, from, until or None)), oldest fault first: what a review must see."""
    by_device = faults_by_device(session, {d for d, _, _ in worn})
    out = {}
    for device_id, w_start, w_end in worn:
        lo, hi = max(start_ms, w_start), end_ms if w_end is None else min(end_ms, w_end)
        for f in by_device.get(device_id, []):
            if lo < hi and f.start_ms < hi and (f.end_ms is None or lo < f.end_ms):
                out[(f.id, device_id)] = (device_id, f)
    return [out[k] for k in sorted(out)]


def not_counted_for_escalation(session: Session, rows) -> set[str]:
    """Of the wearer's breach `rows`, those a fault keeps out of escalation: suspected, or the fault confirmed."""
    return {bid for bid, (_, state) in fault_marks(session, rows).items() if state != "fault_cleared"}


def decide_fault(session: Session, audit, user: User, breach_id: str, *, decision: str, reason: str,
                 now_ms: int) -> EquipmentFaultDecision:
    """Confirm or clear the fault a breach is suspected of. Audited ``breach.equipment_fault``."""
    if decision not in FAULT_DECISIONS:
        raise DeviceError(f"decision must be one of {', '.join(FAULT_DECISIONS)}, not {decision!r}")
    b = session.get(BreachRow, breach_id)
    mark = fault_marks(session, [b]).get(breach_id) if b is not None else None
    if mark is None:
        raise DeviceError(f"breach {breach_id} is not inside any device fault")
    row = session.get(EquipmentFaultDecision, breach_id) or EquipmentFaultDecision(breach_id=breach_id)
    row.fault_id, row.decision, row.reason, row.decided_by, row.decided_ms = mark[0], decision, reason, user.id, now_ms
    session.add(row)
    audit.append(session, action="breach.equipment_fault", actor=user, subject_id=b.subject_id, now_ms=now_ms,
                 justification_ref=f"breach:{breach_id}",
                 detail={"breach_id": breach_id, "fault_id": mark[0], "decision": decision})
    return row

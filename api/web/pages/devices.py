"""`/devices`: the device register and its faults (a recall is a fault on a
whole batch), `/devices/health`: the device-health report; and the
caseworker's decision on a record inside a fault, from the breach page.

Each is the console's side of one API operation, through the same service
function with the same audit entry (channel console): ``list_devices`` and
``list_device_faults`` (no wearer in them: not audited, as in the API),
``register_device`` and ``record_device_fault`` (admin),
``report_device_health`` (`read_health_report`, ``report.read``) and
``decide_equipment_fault`` (`decide_fault`, ``breach.equipment_fault``).
"""
from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import func, select

from api.audit.log import commit_with_checkpoint
from api.db.models import Device, DeviceFault
from api.service.casework_errors import CaseworkError
from api.service.device_health import read_health_report
from api.service.devices import FAULT_DECISIONS, DeviceIn, decide_fault, record_fault, register_device
from api.web.auth import ConsoleRefused, DbSession, console_audit, now_ms, require, require_form
from api.web.london_input import LocalTimeError, parse_london
from api.web.refusal import audit_refusal, release
from api.web.sessions import SignedIn
from api.web.templating import render
from trails.timestamps import parse_timestamp

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
BreachId = Annotated[str, Path(min_length=16, max_length=16, pattern="^[0-9a-f]{16}$")]
Short = Annotated[str, Form(max_length=200)]
_DATE = Annotated[str, Form(max_length=20)]
_TIME = Annotated[str, Form(max_length=10)]
SAVED = {"device": "The device is in the register.", "fault": "The fault is recorded: every record of a covered "
         "device inside its period is now a suspected equipment fault until a caseworker decides."}


def _page(request: Request, session, *, saved: str = "", error: tuple[str, str] | None = None,
          status_code: int = 200) -> Response:
    batches = [((batch, model), n) for batch, model, n in session.execute(
        select(Device.batch, Device.model, func.count()).group_by(Device.batch, Device.model)
        .order_by(Device.batch, Device.model))]  # counted by the database: a national register is 20,000 tags
    faults = list(session.scalars(select(DeviceFault).order_by(DeviceFault.id.desc())))
    return render(request, "devices/devices.html", {
        "batches": batches, "devices": sum(n for _, n in batches), "faults": faults, "now_ms": now_ms(request),
        "saved": SAVED.get(saved), "error": error}, status_code=status_code)


@router.get("/devices")
def devices(request: Request, session: DbSession, me: Annotated[SignedIn, Depends(require("list_devices"))],
            saved: Annotated[str, Query(max_length=20)] = "") -> Response:
    return _page(request, session, saved=saved)


def _instant(date_text: str, time_text: str, what: str) -> int | None:
    if not date_text.strip() and not time_text.strip():
        return None
    return parse_london(date_text, time_text or "00:00", what=what)


def _refused(request: Request, session, form: str, exc: Exception) -> Response:
    session.rollback()
    return _page(request, session, error=(form, str(exc)), status_code=getattr(exc, "status", 422))


@router.post("/devices/register")
def register(request: Request, session: DbSession,
             me: Annotated[SignedIn, Depends(require_form("register_device"))],
             device_id: Short = "", serial: Short = "", model: Short = "", batch: Short = "") -> Response:
    """Add a device to the register (or update it)."""
    try:
        if not all(v.strip() for v in (device_id, serial, model, batch)):
            raise CaseworkError("give the device id, serial, model and batch")
        register_device(session, console_audit(request), me.user, DeviceIn(
            device_id=device_id.strip(), serial=serial.strip(), model=model.strip(), batch=batch.strip(),
            issued_ms=None, returned_ms=None), now_ms=now_ms(request))
    except CaseworkError as exc:
        return _refused(request, session, "device", exc)
    commit_with_checkpoint(session, console_audit(request))
    return RedirectResponse("/devices?saved=device#register", status_code=303)


@router.post("/devices/faults")
def fault(request: Request, session: DbSession,
          me: Annotated[SignedIn, Depends(require_form("record_device_fault"))],
          scope: Annotated[str, Form(max_length=10)] = "", target: Short = "", start_date: _DATE = "",
          start_time: _TIME = "", end_date: _DATE = "", end_time: _TIME = "",
          description: Annotated[str, Form(max_length=10_000)] = "") -> Response:
    """Record a fault on one device, or a recall of a whole batch, over a period (no end: still open)."""
    try:
        if scope not in ("device", "batch") or not target.strip():
            raise CaseworkError("choose a device or a batch, and name it")
        if not description.strip():
            raise CaseworkError("describe the fault: the caseworkers deciding its records will read it")
        start = _instant(start_date, start_time, "start")
        if start is None:
            raise CaseworkError("give the date the fault started")
        record_fault(session, console_audit(request), me.user, device_id=target.strip() if scope == "device" else None,
                     batch=target.strip() if scope == "batch" else None, start_ms=start,
                     end_ms=_instant(end_date, end_time, "end"), description=description.strip(),
                     now_ms=now_ms(request))
    except (CaseworkError, LocalTimeError) as exc:
        return _refused(request, session, "fault", exc)
    commit_with_checkpoint(session, console_audit(request))
    return RedirectResponse("/devices?saved=fault#faults", status_code=303)


@router.get("/devices/health")
def health(request: Request, session: DbSession,
           me: Annotated[SignedIn, Depends(require("report_device_health"))]) -> Response:
    """The last 28 days' device-health report: suspect batches first, then suspect devices."""
    report = read_health_report(session, console_audit(request), me.user, request.app.state.settings.home,
                                start_ms=None, end_ms=None, percentile=99.0, now_ms=now_ms(request))
    commit_with_checkpoint(session, console_audit(request))
    suspects = [r for r in report["devices"] if r["suspect"]]
    shares = [v for v in report["charging_compliance"].values() if v is not None]
    return render(request, "devices/health.html", {"report": report, "suspects": suspects,
                                                   "from_ms": parse_timestamp(report["from"]),
                                                   "to_ms": parse_timestamp(report["to"]),
                                                   "wearers": len(shares),
                                                   "low_charging": sum(1 for v in shares if v < 0.8)})


@router.post("/breaches/{breach_id}/equipment-fault")
def decide(request: Request, breach_id: BreachId, session: DbSession,
           me: Annotated[SignedIn, Depends(require_form("decide_equipment_fault"))],
           decision: Annotated[str, Form(max_length=20)] = "",
           reason: Annotated[str, Form(max_length=10_000)] = "") -> Response:
    """Confirm (it never counts toward escalation) or clear (it counts) the fault a record is suspected of."""
    try:
        if decision not in FAULT_DECISIONS or not reason.strip():
            raise CaseworkError("choose confirm or clear, and give the reason")
        decide_fault(session, console_audit(request), me.user, breach_id, decision=decision, reason=reason.strip(),
                     now_ms=now_ms(request))
    except CaseworkError as exc:
        release(session, me)
        audit_refusal(request, me, "decide_equipment_fault", exc.status, str(exc), params={"breach_id": breach_id})
        raise ConsoleRefused(exc.status, "This record's fault cannot be decided as asked", str(exc)) from None
    commit_with_checkpoint(session, console_audit(request))
    return RedirectResponse(f"/breaches/{quote(breach_id)}#record-fault", status_code=303)

"""`/v1/reports`: access requests by outcome x kind (inspection Figure 9) and
breaches by type x month (Figure 6), as JSON or CSV; casework by month
(`api.service.casework_report`) as JSON, CSV or XLSX."""
from __future__ import annotations

import io
import json
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response

from api.access import csvsafe, xlsxsafe
from api.access.reports import access_request_report, breach_report, report_csv, subject_access_figures
from api.http.deps import AuditDep, ClockDep, CurrentUser, SessionDep, SettingsDep, authorize, commit
from api.http.errors import Unprocessable
from api.http.guard import GuardedRoute
from api.http.schemas import fmt_ts, parse_ts
from api.service.casework_report import casework_report, casework_rows
from api.service.device_health import read_health_report

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
router = APIRouter(prefix="/reports", tags=["reports"], dependencies=[Depends(authorize)], route_class=GuardedRoute)

From = Annotated[str | None, Query(alias="from", max_length=40, description="RFC 3339 with offset (inclusive)")]
To = Annotated[str | None, Query(alias="to", max_length=40, description="RFC 3339 with offset (exclusive)")]
Format = Annotated[Literal["json", "csv"], Query(alias="format")]
_RESPONSES = {200: {"content": {"application/json": {}, "text/csv": {}}}}


def _period(from_: str | None, to: str | None) -> tuple[int | None, int | None]:
    out = []
    for name, value in (("from", from_), ("to", to)):
        if value is None:
            out.append(None)
            continue
        try:
            out.append(parse_ts(value))
        except ValueError as exc:
            raise Unprocessable(f"{name}: {exc}") from None
    if out[0] is not None and out[1] is not None and out[0] >= out[1]:
        raise Unprocessable(f"from {from_!r} must be before to {to!r}")
    return out[0], out[1]


def _respond(report: dict, fmt: str, name: str) -> Response:
    if fmt == "csv":
        return Response(report_csv(report), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    return Response(json.dumps(report), media_type="application/json")


@router.get("/access-requests", operation_id="report_access_requests", response_class=Response,
            responses=_RESPONSES)
def report_access_requests(session: SessionDep, user: CurrentUser, audit: AuditDep, clock: ClockDep,
                           from_: From = None, to: To = None, fmt: Format = "json") -> Response:
    """Access requests made in [from, to) by outcome x kind, with totals
    (outcomes include withdrawn and pending), and by requester organisation;
    in JSON, `subject_access`: the subject access requests received against
    their deadline (answered in time or late, open, open past it, extended).

    Roles: approver, auditor, admin.
    """
    from_ms, to_ms = _period(from_, to)
    report = {"from": fmt_ts(from_ms), "to": fmt_ts(to_ms), **access_request_report(session, from_ms=from_ms, to_ms=to_ms),
              "subject_access": subject_access_figures(session, from_ms=from_ms, to_ms=to_ms, now_ms=clock())}
    audit.append(session, action="report.read", actor=user, now_ms=clock(),
                 detail={"report": "access-requests", "from": report["from"], "to": report["to"], "format": fmt})
    commit(session, audit)
    return _respond(report, fmt, "access-requests")


@router.get("/breaches", operation_id="report_breaches", response_class=Response, responses=_RESPONSES)
def report_breaches(session: SessionDep, user: CurrentUser, audit: AuditDep, clock: ClockDep,
                    from_: From = None, to: To = None, fmt: Format = "json") -> Response:
    """Breaches (not alerts) starting in [from, to) by type x UTC month,
    with row and column totals. Withdrawn records (removed by later data) are
    not in the rows or totals: `withdrawn` counts them by month (in CSV, a
    last row ``withdrawn`` after the total row).

    Roles: approver, auditor, admin.
    """
    from_ms, to_ms = _period(from_, to)
    report = {"from": fmt_ts(from_ms), "to": fmt_ts(to_ms), **breach_report(session, from_ms=from_ms, to_ms=to_ms)}
    audit.append(session, action="report.read", actor=user, now_ms=clock(),
                 detail={"report": "breaches", "from": report["from"], "to": report["to"], "format": fmt})
    commit(session, audit)
    return _respond(report, fmt, "breaches")


@router.get("/casework", operation_id="report_casework", response_class=Response,
            responses={200: {"content": {"application/json": {}, "text/csv": {}, XLSX: {}}}})
def report_casework(session: SessionDep, user: CurrentUser, audit: AuditDep, settings: SettingsDep, clock: ClockDep,
                    fmt: Annotated[Literal["json", "csv", "xlsx"], Query(alias="format")] = "json") -> Response:
    """Per UTC month: breaches actioned, median hours from detection to the first action, mitigations
    received and decided in time or late, letters by ladder step, reviews done; and as at now, reviews
    overdue and wearers without an owner. Counts only.

    Roles: approver, auditor, admin.
    """
    now = clock()
    report = casework_report(session, now_ms=now, review_every_days=settings.review_every_days)
    audit.append(session, action="report.read", actor=user, now_ms=now, detail={"report": "casework", "format": fmt})
    commit(session, audit)
    if fmt == "json":
        return Response(json.dumps(report), media_type="application/json")
    if fmt == "csv":
        buf = io.StringIO()
        csvsafe.writer(buf, lineterminator="\n").writerows(casework_rows(report))
        return Response(buf.getvalue(), media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="casework.csv"'})
    return Response(xlsxsafe.workbook_bytes([("casework", casework_rows(report))]), media_type=XLSX,
                    headers={"Content-Disposition": 'attachment; filename="casework.xlsx"'})


@router.get("/device-health", operation_id="report_device_health")
def report_device_health(session: SessionDep, user: CurrentUser, audit: AuditDep, settings: SettingsDep,
                         clock: ClockDep, from_: From = None, to: To = None,
                         percentile: Annotated[float, Query(ge=50, le=100)] = 99.0) -> dict:
    """Per device: discharge rate (%/h while not charging), charges per day, poor-accuracy share, gaps
    per day, and the measures it is suspect on (above the `percentile` of other batches' devices);
    suspect batches; charging compliance per wearer. Default period: the last 28 days. Audited.

    Roles: approver, auditor, admin.
    """
    from_ms, to_ms = _period(from_, to)
    report = read_health_report(session, audit, user, settings.home, start_ms=from_ms, end_ms=to_ms,
                                percentile=percentile, now_ms=clock())
    commit(session, audit)
    return report

"""`/reports`: the oversight reports in the console (approver, auditor,
admin: the API's ``report_breaches`` and ``report_access_requests``):
breaches by type x month (the inspection's Figure 6) and requests by outcome
x kind (Figure 9) as tables and uPlot charts, and request turnaround times.

The figures come from `api.access.reports` (the functions the API reports
call), so the page, the API and the downloads never disagree. The charts are
drawn by static/reports.js from the page's ``application/json`` block (no
inline script: CSP); the tables are the accessible form of the same figures.
Downloads: /reports/breaches.csv|.xlsx and /reports/access-requests.csv|.xlsx
(`report_csv` through `csvsafe`, `report_xlsx` through `xlsxsafe`: text that
looks like a formula is neutralised). Every view and download is a
``report.read`` entry as the API writes it (report, from, to, format), with
channel console.
"""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from api.access.permissions import is_allowed
from api.access.reports import (access_request_report, breach_report, report_csv, report_xlsx,
                                request_turnaround)
from api.audit.log import commit_with_checkpoint
from api.web.auth import DbSession, console_audit, now_ms, require
from api.web.sessions import SignedIn
from api.web.templating import render

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_TITLES = {"breaches": "Breaches by type and month", "access-requests": "Requests by outcome and kind"}


def _audit_read(request: Request, session, me: SignedIn, report: str, fmt: str) -> None:
    console_audit(request).append(session, action="report.read", actor=me.user, now_ms=now_ms(request),
                                  detail={"report": report, "from": None, "to": None, "format": fmt})


def _chart_data(breaches: dict, requests: dict | None) -> dict:
    """What static/reports.js draws: labels along x, one series per type or kind."""
    out = {"breaches": {"labels": breaches["months"],
                        "series": [{"label": r["type"].replace("_", " "), "values": [r["months"][m] for m in
                                                                                    breaches["months"]]}
                                   for r in breaches["rows"]]}}
    if requests is not None:
        kinds = [c for c in requests["columns"] if c != "total"]
        out["requests"] = {"labels": [r["outcome"].replace("_", " ") for r in requests["rows"]],
                           "series": [{"label": k, "values": [r[k] for r in requests["rows"]]} for k in kinds]}
    return out


@router.get("/reports")
def reports_page(request: Request, session: DbSession,
                 me: Annotated[SignedIn, Depends(require("report_breaches"))]) -> Response:
    breaches = breach_report(session)
    _audit_read(request, session, me, "breaches", "html")
    requests = turnaround = None
    if is_allowed("report_access_requests", me.user.role):
        requests = access_request_report(session)
        turnaround = request_turnaround(session)
        _audit_read(request, session, me, "access-requests", "html")
    commit_with_checkpoint(session, console_audit(request))
    return render(request, "reports/reports.html", {
        "breaches": breaches, "requests": requests, "turnaround": turnaround,
        "chart_data": _chart_data(breaches, requests)})


def _download(request: Request, session, me: SignedIn, name: str, fmt: str) -> Response:
    report = breach_report(session) if name == "breaches" else access_request_report(session)
    report = {"from": None, "to": None, **report}
    _audit_read(request, session, me, name, fmt)
    commit_with_checkpoint(session, console_audit(request))
    if fmt == "csv":
        body, media = report_csv(report).encode("utf-8"), "text/csv; charset=utf-8"
    else:
        body, media = report_xlsx(report, _TITLES[name]), XLSX
    return Response(body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'})


@router.get("/reports/breaches.{fmt}")
def breaches_download(request: Request, session: DbSession, fmt: Literal["csv", "xlsx"],
                      me: Annotated[SignedIn, Depends(require("report_breaches"))]) -> Response:
    return _download(request, session, me, "breaches", fmt)


@router.get("/reports/access-requests.{fmt}")
def requests_download(request: Request, session: DbSession, fmt: Literal["csv", "xlsx"],
                      me: Annotated[SignedIn, Depends(require("report_access_requests"))]) -> Response:
    return _download(request, session, me, "access-requests", fmt)

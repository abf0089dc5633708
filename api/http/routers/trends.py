"""`GET /v1/reports/trends`: breach trends per UTC month and district that expose no one.

A thin edge over `api.service.trends` (the release rule: threshold 10,
secondary suppression, rounding to 5) and `api.service.trends_source` (the
records, placed in the district of the wearer's curfew zone). The only
parameters are a month range and the format: nothing narrows to a wearer, a
place smaller than the loaded geography, or a time finer than a month; a range
holding fewer than 10 wearers with a breach is refused (422) rather than
answered. Audited as the other reports (``report.read``).
"""
from __future__ import annotations

import io
import json
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response

from api.access import csvsafe
from api.http.deps import AuditDep, ClockDep, CurrentUser, SessionDep, SettingsDep, authorize, commit
from api.http.errors import Unprocessable
from api.http.guard import GuardedRoute
from api.service.trends import BASE, ONSET_CAP, THRESHOLD, Release, release
from api.service.trends_source import Districts, month_span, read_onsets
from geofence.records import RECORD_TYPES

__all__ = ["router", "months_between"]

router = APIRouter(prefix="/reports", tags=["reports"], dependencies=[Depends(authorize)], route_class=GuardedRoute)

_MONTH = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
FromMonth = Annotated[str | None, Query(alias="from", pattern=_MONTH, description="first UTC month, YYYY-MM")]
ToMonth = Annotated[str | None, Query(alias="to", pattern=_MONTH, description="last UTC month, YYYY-MM (inclusive)")]
#: Longest range one release covers (ten years of months).
MAX_MONTHS = 120
RULES = {"threshold_wearers": THRESHOLD, "rounding_base": BASE, "rounding": "nearest (remainder 0-2 down, 3-4 up)",
         "onsets_counted_per_wearer_month_type_at_most": ONSET_CAP,
         "secondary_suppression": "per month and type: a second cell where one is suppressed; the national total "
                                  "too where a suppressed cell could otherwise be narrowed to one value",
         "missing_cells": "suppressed or zero (not told apart)", "differential_privacy": None}


def months_between(first: str, last: str) -> list[str]:
    """Every month from `first` to `last` inclusive (YYYY-MM)."""
    y, m = int(first[:4]), int(first[5:])
    out = []
    while f"{y:04d}-{m:02d}" <= last:
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _csv(body: dict) -> str:
    buf = io.StringIO()
    w = csvsafe.writer(buf, lineterminator="\n")
    w.writerow(["month", "area", "type", "wearers", "onsets"])
    w.writerows([c["month"], c["area"], c["type"], c["wearers"], c["onsets"]] for c in body["cells"])
    w.writerows([t["month"], "all areas", t["type"], "suppressed" if t["suppressed"] else t["wearers"],
                 "suppressed" if t["suppressed"] else t["onsets"]] for t in body["totals"])
    return buf.getvalue()


def _months(session, from_: str | None, to: str | None) -> list[str]:
    """The months asked for, each end defaulting to the first/last month with a breach (fixed by the
    range, never by who is in it); a reversed or over-long range is refused."""
    if from_ is not None and to is not None and from_ > to:
        raise Unprocessable(f"from {from_!r} must not be after to {to!r}")
    span = month_span(session)
    if span is None and (from_ is None or to is None):
        return []
    first, last = from_ or span[0], to or span[1]
    if first > last:
        return []
    months = months_between(first, last)
    if len(months) > MAX_MONTHS:
        raise Unprocessable(f"from {first!r} to {last!r} is {len(months)} months; at most {MAX_MONTHS}")
    return months


@router.get("/trends", operation_id="report_trends", response_class=Response,
            responses={200: {"content": {"application/json": {}, "text/csv": {}}}})
def report_trends(session: SessionDep, user: CurrentUser, audit: AuditDep, settings: SettingsDep, clock: ClockDep,
                  from_: FromMonth = None, to: ToMonth = None,
                  fmt: Annotated[Literal["json", "csv"], Query(alias="format")] = "json") -> Response:
    """Per UTC month, district and breach type: distinct wearers with at least one breach, and onsets
    (at most 5 per wearer), with a national total per month and type. Cells under 10 wearers are not
    published, nor a second cell that would let one be worked out; counts are rounded to 5. No wearer
    id, coordinate or time finer than a month. A `from`/`to` range with fewer than 10 wearers with a
    breach is refused (422). Defaults: the first and last month with a breach.

    Roles: approver, auditor, admin.
    """
    months = _months(session, from_, to)
    districts = Districts.load(settings.home)
    onsets = read_onsets(session, districts, first_month=months[0] if months else None,
                         last_month=months[-1] if months else None) if months else []
    if (from_ is not None or to is not None) and len({o[2] for o in onsets}) < THRESHOLD:
        span = f"{months[0]} to {months[-1]}" if months else f"from {from_ or 'the first'} to {to or 'the last'}"
        raise Unprocessable(f"the months {span} hold fewer than {THRESHOLD} wearers with a breach: nothing is "
                            "released for so few")
    rel: Release = release(onsets, months=months, areas=districts.areas(), types=RECORD_TYPES)
    body = {"from": months[0] if months else None, "to": months[-1] if months else None,
            "geography": {"areas": len(districts.names), "kind": "the boundary file the admin loaded"},
            "rules": RULES, **rel.as_dict()}
    audit.append(session, action="report.read", actor=user, now_ms=clock(),
                 detail={"report": "trends", "from": body["from"], "to": body["to"], "format": fmt})
    commit(session, audit)
    if fmt == "csv":
        return Response(_csv(body), media_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="trends.csv"'})
    return Response(json.dumps(body), media_type="application/json")

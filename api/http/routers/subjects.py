"""`/v1/subjects/{subject_id}`: one wearer. Its assignments and zones
(``GET /v1/subjects/{id}``), its curfew compliance (``.../compliance``), and
its breach and alert records (``.../breaches``: the contract's fields, with
their status, from the database `tagtrail detect --db` and continuous
detection fill). The first two are `api.service.subjects`, which the
console's wearer page (/subjects/{id}) calls too.

Records that continuous detection withdrew (data received later removed
them) are not the wearer's breaches any more: they are left out unless
asked for with ``include_withdrawn=true``, and then carry ``status:
withdrawn`` and the reason, so a withdrawn record is never read as live.
"""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from sqlalchemy import select

from api.access.extracts import ATTENDANCE_KEYS
from api.audit.entries import FilterError, parse_bound
from api.http.deps import AuditDep, ClockDep, CurrentUser, SessionDep, SettingsDep, authorize, commit
from api.http.guard import GuardedRoute
from api.http.errors import Conflict, NotFound, Unprocessable
from api.db.models import BreachRow
from api.service.casework_errors import CaseworkError, CaseworkNotFound
from api.service.evidence_documents import EvidenceByRequestOnly
from api.service.evidence_period import period_document
from api.http.schemas import (AssignmentPublic, AttendanceWindowPublic, BreachList, CompliancePublic, SubjectBreach,
                              SubjectSummaryPublic, SubjectZone)
from api.service.subjects import (PeriodError, SubjectError, SubjectSummary, UnknownSubject, read_compliance,
                                  read_subject, subject_known)
from geofence.model import zone_label, zone_version
from trails.timestamps import format_ms

router = APIRouter(prefix="/subjects", tags=["subjects"], dependencies=[Depends(authorize)],
                   route_class=GuardedRoute)


@router.get("/{subject_id}/breaches", operation_id="list_subject_breaches", response_model=BreachList)
def list_subject_breaches(
        subject_id: Annotated[str, Path(max_length=200)], session: SessionDep, user: CurrentUser,
        audit: AuditDep, clock: ClockDep,
        priority: Annotated[int | None, Query(ge=1, le=4, description="1 (act first) .. 4")] = None,
        type: Annotated[str | None, Query(max_length=30)] = None,
        include_withdrawn: Annotated[bool, Query(description="also list withdrawn records (status withdrawn, "
                                                             "with withdrawn_reason)")] = False) -> BreachList:
    """A wearer's breach and alert records, oldest first, optionally by
    priority and type; withdrawn records only with `include_withdrawn`.
    404 for a wearer unknown to the database.

    Roles: caseworker, approver, auditor, admin.
    """
    if not subject_known(session, subject_id):
        raise NotFound(f"subject {subject_id!r} is not in the database")
    q = select(BreachRow).where(BreachRow.subject_id == subject_id).order_by(BreachRow.start_ms, BreachRow.breach_id)
    if priority is not None:
        q = q.where(BreachRow.priority == priority)
    if type is not None:
        q = q.where(BreachRow.type == type)
    if not include_withdrawn:
        q = q.where(BreachRow.status != "withdrawn")
    rows = list(session.scalars(q))
    items = [SubjectBreach(breach_id=b.breach_id, kind=b.kind, type=b.type, subject_id=b.subject_id,
                           device_id=b.device_id, zone_id=b.zone_id, start=b.start, end=b.end,
                           duration_s=b.duration_s, priority=b.priority, status=b.status,
                           withdrawn_reason=b.withdrawn_reason) for b in rows]
    audit.append(session, action="breach.read", actor=user, subject_id=subject_id, now_ms=clock(),
                 detail={"priority": priority, "type": type, "include_withdrawn": include_withdrawn,
                         "breach_ids": [b.breach_id for b in rows]})
    commit(session, audit)
    return BreachList(items=items, count=len(items))


SubjectId = Annotated[str, Path(max_length=200)]


def summary_public(summary: SubjectSummary) -> SubjectSummaryPublic:
    """The API's form of a wearer's summary (segments as `GET /v1/admin/assignments` lists them)."""
    segs = [AssignmentPublic(subject_id=summary.subject_id, device_id=s.device_id,
                             start=format_ms(s.assignment_start_ms), segment_start=format_ms(s.start_ms),
                             end=None if s.end_ms is None else format_ms(s.end_ms),
                             zones=[zone_label(k) for k in s.zones],
                             zone_versions={zone_label(k): zone_version(k) for k in s.zones}) for s in summary.segments]
    zones = [SubjectZone(zone_id=zone_label(z.zone_id), version=zone_version(z.zone_id), kind=z.kind,
                         feature=summary.features.get(z.zone_id, {})) for z in summary.zones]
    return SubjectSummaryPublic(subject_id=summary.subject_id, assignments=segs, zones=zones)


@router.get("/{subject_id}", operation_id="get_subject", response_model=SubjectSummaryPublic)
def get_subject(subject_id: SubjectId, request: Request, session: SessionDep, user: CurrentUser, audit: AuditDep,
                clock: ClockDep) -> SubjectSummaryPublic:
    """A wearer's assignment segments (device, period, zones at their versions) and
    those zone versions (GeoJSON features); audited as ``subject.read``. 404 for a
    wearer unknown to the database.

    Roles: caseworker, approver, auditor, admin.
    """
    try:
        summary = read_subject(session, audit, user, subject_id, now_ms=clock(),
                               crs=request.app.state.stream.policy().crs)
    except UnknownSubject as exc:
        raise NotFound(str(exc)) from None
    out = summary_public(summary)
    commit(session, audit)
    return out


@router.get("/{subject_id}/compliance", operation_id="subject_compliance", response_model=CompliancePublic)
def subject_compliance(subject_id: SubjectId, request: Request, session: SessionDep, user: CurrentUser,
                       audit: AuditDep, settings: SettingsDep, clock: ClockDep,
                       from_: Annotated[str | None, Query(alias="from", max_length=40,
                                                          description="inclusive: a London date or RFC 3339")] = None,
                       to: Annotated[str | None, Query(max_length=40, description="exclusive instant, or a London "
                                                                                   "date (inclusive)")] = None
                       ) -> CompliancePublic:
    """A wearer's curfew windows in a period, each with its status (home, absent,
    unknown) and the seconds at home, absent and unknown, as an attendance extract
    holds them (no coordinates), and the windows per status. The period defaults
    to the 28 days ending where detection stands (never after now), inside the
    wearer's monitoring; at most 92 days (422). Audited as ``subject.compliance``.
    404 for a wearer unknown to the database.

    Roles: caseworker, approver, auditor, admin.
    """
    try:
        start = parse_bound("from", from_, end=False) if from_ else None
        end = parse_bound("to", to, end=True) if to else None
        c = read_compliance(session, audit, user, settings.home, subject_id, start_ms=start, end_ms=end,
                            now_ms=clock(), flush_store=request.app.state.stream.flush)
    except UnknownSubject as exc:
        raise NotFound(str(exc)) from None
    except (FilterError, PeriodError, SubjectError) as exc:
        raise Unprocessable(str(exc)) from None
    counts = c.counts()
    out = CompliancePublic(subject_id=subject_id, start=format_ms(c.start_ms), end=format_ms(c.end_ms),
                           as_of=format_ms(c.as_of_ms), counts=counts.pop(""), counts_by_zone=counts,
                           windows=[AttendanceWindowPublic(**dict(zip(ATTENDANCE_KEYS, w.row()))) for w in c.windows])
    commit(session, audit)
    return out


@router.get("/{subject_id}/evidence", operation_id="get_subject_evidence",
            responses={200: {"description": "the wearer's evidence pack for the period; X-Evidence-SHA256 is its "
                                            "SHA-256", "content": {"application/pdf": {}, "text/html": {}}}})
def subject_evidence(subject_id: SubjectId, request: Request, session: SessionDep, user: CurrentUser,
                     audit: AuditDep, settings: SettingsDep, clock: ClockDep,
                     from_: Annotated[str, Query(alias="from", max_length=40,
                                                 description="inclusive: a London date or RFC 3339")],
                     to: Annotated[str, Query(max_length=40, description="exclusive instant, or a London date "
                                                                        "(inclusive)")],
                     format: Literal["pdf", "html"] = "pdf") -> Response:
    """The wearer's evidence pack for a period: a cover listing every breach record that started in it and
    how each stands (counted, excused, inside a device fault), then each record's own pack as ``GET
    /v1/breaches/{id}/evidence`` makes it. Audited as ``subject.evidence_pack`` (ground bail_breach, each
    record's data SHA-256 and the document's).

    Roles: caseworker, approver, auditor, admin. 404 when no breach record started in the period; 422 for a
    bad period or more than 40 records (ask for a shorter one); 409 where the service shows fixes only
    through an access request.
    """
    try:
        start, end = parse_bound("from", from_, end=False), parse_bound("to", to, end=True)
        pack = period_document(session, audit, user, settings, subject_id, format, start_ms=start, end_ms=end,
                               now_ms=clock(), flush_store=request.app.state.stream.flush)
    except EvidenceByRequestOnly as exc:
        raise Conflict(str(exc)) from None
    except CaseworkNotFound as exc:
        raise NotFound(str(exc)) from None
    except (FilterError, CaseworkError) as exc:
        raise Unprocessable(str(exc)) from None
    commit(session, audit)
    return Response(content=pack.content, media_type=pack.media_type,
                    headers={"Content-Disposition": f'attachment; filename="{pack.filename}"',
                             "X-Evidence-SHA256": pack.sha256, "X-Data-SHA256": pack.data_sha256,
                             "Cache-Control": "no-store"})

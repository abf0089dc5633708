"""`/v1/breaches`: the Hub's work list (the breach queue) and its statuses.

Records come from detection (`tagtrail detect --db`, or continuous detection
in the service); each carries a status: ``new``, ``in_review``, ``actioned``,
or ``withdrawn`` (set only by detection, with a reason, when data received
later removes the record; it is never deleted). `GET /v1/breaches/{id}`
gives one record with its history: every status change, who made it and
when, the assignee it left and the note written with it. Every read and
every status change is audited. The queries, rules and audit entries are
`api.service.breach_queue`'s (the console calls the same functions).
"""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from api.http.deps import AuditDep, ClockDep, CurrentUser, SessionDep, SettingsDep, authorize, commit
from api.http.guard import GuardedRoute
from api.http.errors import ApiError, Conflict, NotFound, Unprocessable
from api.db.models import BreachRow
from api.http.schemas import BreachDetail, BreachEventPublic, BreachStatusChange, QueueItem, QueuePage, fmt_ts
from api.service.breach_queue import (UNCHANGED, QueueError, QueueFilter, UnknownAssignee, UnknownBreach,
                                      change_status, read_breach, read_queue)
from api.service.devices import fault_marks
from api.service.evidence_documents import FORMATS, evidence_document
from geofence.records import RECORD_TYPES

router = APIRouter(prefix="/breaches", tags=["breach queue"], dependencies=[Depends(authorize)], route_class=GuardedRoute)

Status = Literal["new", "in_review", "actioned", "withdrawn"]
RecordType = Literal[RECORD_TYPES]  # type: ignore[valid-type]
BreachId = Annotated[str, Path(min_length=16, max_length=16, pattern="^[0-9a-f]{16}$")]


def _api_error(exc: QueueError) -> ApiError:
    """The API's answer to a queue change that cannot be made: 404, 422 or 409."""
    if isinstance(exc, UnknownBreach):
        return NotFound(str(exc))
    if isinstance(exc, UnknownAssignee):
        return Unprocessable(str(exc))
    return Conflict(str(exc))


def _items(session, rows: list[BreachRow]) -> list[QueueItem]:
    marks = fault_marks(session, rows)
    return [_item(b, marks.get(b.breach_id, (None, None))[1]) for b in rows]


def _item(b: BreachRow, equipment_fault: str | None = None) -> QueueItem:
    return QueueItem(breach_id=b.breach_id, kind=b.kind, type=b.type, subject_id=b.subject_id, device_id=b.device_id,
                     zone_id=b.zone_id, start=b.start, end=b.end, duration_s=b.duration_s, priority=b.priority,
                     status=b.status, assignee=b.assignee, first_seen=fmt_ts(b.first_seen_ms),
                     updated=fmt_ts(b.updated_ms), status_changed=fmt_ts(b.status_ms),
                     withdrawn_reason=b.withdrawn_reason, equipment_fault=equipment_fault)


@router.get("/queue", operation_id="breach_queue", response_model=QueuePage)
def breach_queue(session: SessionDep, user: CurrentUser, audit: AuditDep, clock: ClockDep,
                 status: Annotated[list[Status] | None, Query(description="default: new and in_review")] = None,
                 priority: Annotated[int | None, Query(ge=1, le=4)] = None,
                 kind: Literal["breach", "alert"] | None = None,
                 type: Annotated[list[RecordType] | None,
                                 Query(description="record types (repeat for several)")] = None,
                 subject_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
                 assignee: Annotated[str | None, Query(max_length=200)] = None,
                 limit: Annotated[int, Query(ge=1, le=500)] = 100,
                 offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0) -> QueuePage:
        """The work list: records by priority (1 first), then oldest first.
        Filters combine (all must hold); a query parameter not listed here is
        a 422, never ignored.

        Roles: caseworker, approver, auditor, admin.
        """
        f = QueueFilter(statuses=tuple(status or ()), priority=priority, kind=kind, types=tuple(type or ()),
                        subject_id=subject_id, assignee=assignee, limit=limit, offset=offset)
        page = read_queue(session, audit, user, f, now_ms=clock())
        out = QueuePage(items=_items(session, page.rows), count=len(page.rows), total=page.total)
        commit(session, audit)
        return out


@router.get("/stream-status", operation_id="stream_status")
def stream_status(request: Request, session: SessionDep, user: CurrentUser) -> dict:
    """How far continuous detection has got: rows received and not yet
    processed (0 when the queue is up to date), the as_of it stands at, and
    the last error of the background pass, if any. Not audited: it holds no
    personal data.

    Roles: admin, auditor, feed.
    """
    return request.app.state.stream.status(session)


@router.post("/{breach_id}/status", operation_id="set_breach_status", response_model=QueueItem)
def set_breach_status(breach_id: BreachId, body: BreachStatusChange, session: SessionDep, user: CurrentUser,
                      audit: AuditDep, clock: ClockDep) -> QueueItem:
    """Move a record along the work list (new, in_review, actioned) and, when
    `assignee` is given, (un)assign it: the name of an active user, or null.
    Without `assignee` the assignment stays as it is. The note is kept with
    the record's history; the audit log holds only its SHA-256.

    Roles: caseworker. A withdrawn record cannot be changed (409); only
    detection withdraws. An assignee who is not an active user is a 422.
    """
    assignee = body.assignee if "assignee" in body.model_fields_set else UNCHANGED
    try:
        b = change_status(session, audit, user, breach_id, status=body.status, note=body.note, assignee=assignee,
                          now_ms=clock())
    except QueueError as exc:
        raise _api_error(exc) from None
    (out,) = _items(session, [b])
    commit(session, audit)
    return out


@router.get("/{breach_id}", operation_id="get_breach", response_model=BreachDetail)
def get_breach(breach_id: BreachId, session: SessionDep, user: CurrentUser, audit: AuditDep,
               clock: ClockDep) -> BreachDetail:
    """One record and its history on the work list, oldest change first:
    each status change with who made it, when, the assignee it left and the
    note written with it (notes are kept here, not in the audit log). The
    read is audited (the record's wearer by pseudonym).

    Roles: caseworker, approver, auditor, admin. 404 for an unknown breach_id.
    """
    try:
        b, events = read_breach(session, audit, user, breach_id, now_ms=clock())
    except QueueError as exc:
        raise _api_error(exc) from None
    history = [BreachEventPublic(event_id=e.id, at=fmt_ts(e.ts_ms), user_id=e.user_id, user=name,
                                 from_status=e.from_status, to_status=e.to_status, assignee=e.assignee, note=e.note)
               for e, name in events]
    (item,) = _items(session, [b])
    out = BreachDetail(**item.model_dump(), history=history)
    commit(session, audit)
    return out


@router.get("/{breach_id}/evidence", operation_id="get_breach_evidence",
            responses={200: {"description": "the evidence pack; header X-Evidence-SHA256 is its SHA-256",
                             "content": {"application/pdf": {}, "text/html": {}}}})
def get_breach_evidence(breach_id: BreachId, request: Request, session: SessionDep, user: CurrentUser,
                        audit: AuditDep, settings: SettingsDep, clock: ClockDep,
                        format: Literal["pdf", "html"] = "pdf") -> Response:
    """The record's evidence pack, for a warning letter or a prosecution file:
    the record in words with its thresholds, London and UTC times, a map of
    the zone and of the fixes in the record's window (plus coverage) with
    their accuracy circles, the timeline, a data-quality statement, the
    policy and software versions and the SHA-256 of the data. Audited as
    ``breach.evidence_pack`` (ground bail_breach, the document's SHA-256).

    Roles: caseworker, approver, auditor, admin. 404 for an unknown
    breach_id; 409 where the service shows fixes only through an access
    request (breach_evidence "request").
    """
    try:
        pack = evidence_document(session, audit, user, settings, breach_id, format, now_ms=clock(),
                                 flush_store=request.app.state.stream.flush)
    except QueueError as exc:
        raise _api_error(exc) from None
    commit(session, audit)
    return Response(content=pack.content, media_type=FORMATS[format],
                    headers={"Content-Disposition": f'attachment; filename="{pack.filename}"',
                             "X-Evidence-SHA256": pack.sha256, "X-Data-SHA256": pack.data_sha256,
                             "Cache-Control": "no-store"})

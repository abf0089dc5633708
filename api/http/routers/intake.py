"""`POST /v1/fixes`: a batch of fixes (and events) from the monitoring supplier.

The batch is validated and deduplicated row by row (CONTRACT.md reasons 1-7
and 10), and the accepted rows are durable in the intake log before the
response returns; detection runs on them in the background and the breach
queue shows the results within moments. Sending the same batch twice adds
nothing (every row is then a duplicate).
"""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from api.http.deps import AuditDep, ClockDep, CurrentUser, SessionDep, SettingsDep, authorize
from api.http.errors import Unprocessable, UnsupportedMediaType
from api.http.guard import GuardedRoute
from api.service.intake import BatchError, parse_csv_body, parse_json_body, take_batch
from api.http.schemas import IntakeResponse

router = APIRouter(tags=["intake"], dependencies=[Depends(authorize)], route_class=GuardedRoute)


@router.post("/fixes", operation_id="post_fixes", response_model=IntakeResponse,
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": {"type": "object", "properties": {
                     "fixes": {"type": "array", "items": {"type": "object"}},
                     "events": {"type": "array", "items": {"type": "object"}}}}},
                 "text/csv": {"schema": {"type": "string"}}}}})
async def post_fixes(request: Request, session: SessionDep, user: CurrentUser, audit: AuditDep,
                     settings: SettingsDep, clock: ClockDep,
                     kind: Annotated[Literal["fixes", "events"], Query(description="what a CSV body holds")] = "fixes"
                     ) -> IntakeResponse:
    """Accept a batch of at most 50,000 rows: JSON (``{"fixes": [...], "events": [...]}``)
    or CSV (a fixes file, or an events file with ``kind=events``). Returns, per
    source, the rows received, accepted and quarantined by reason.

    A row dated more than the policy's ``max_clock_ahead_s`` after the batch
    arrived is quarantined ``future_timestamp``.

    Roles: feed.
    """
    raw = await request.body()  # at most api.http.guard.INTAKE_BODY_LIMIT bytes, counted as they arrive
    ctype = (request.headers.get("content-type") or "application/json").split(";")[0].strip().lower()
    if ctype not in ("application/json", "text/csv"):
        raise UnsupportedMediaType(f"content type {ctype!r}: send application/json or text/csv")
    stream = request.app.state.stream

    def work():
        try:
            if ctype == "application/json":
                fixes, events = parse_json_body(raw)
            else:
                table = parse_csv_body(raw, kind, settings.home / "tmp")
                fixes, events = (table, None) if kind == "fixes" else (None, table)
            return take_batch(stream, session, audit, fixes=fixes, events=events, source=f"api:{user.name}",
                              user=user, now_ms=clock())
        except BatchError as exc:
            raise Unprocessable(str(exc)) from None

    result = await run_in_threadpool(work)
    return IntakeResponse(**result.as_json())

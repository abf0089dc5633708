"""`/requests/{id}`: one access request, and what may be done with it, on
the service the API uses (`api.access.requests`).

Everyone who may read it sees its status and decision (audited
``request.read``, channel console; a requester only their own, and a refusal
is masked as the API masks it). The approver sees the identity check (an
external requester's) and the decision form, which narrows the period in UK
time; never on a request they made, from any of their accounts (the API's
rule, `api.access.requests.own_request`). The requester, once data is
approved, gets the extract's download buttons (``/requests/{id}/extract``,
audited ``extract.download`` like the API's) and the extract itself on the
page: a table of the fixes with their quality (or of the curfew windows, for
attendance). Showing it is a release of the data, so it is audited exactly
as a download of the kind's default format is (the same bytes, the same
SHA-256). A trail extract is also drawn on a map (``static/map.js``): each fix
with its accuracy circle, coloured by the per-fix quality the extract
carries; the map's data block is built from the very bytes that were
audited (the parsed GeoJSON the table comes from), so it needs no second
read and no second audit entry, and it holds exactly what the download holds.
"""
from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from api.access.permissions import is_allowed
from api.access.requests import (DATA_OUTCOMES, RequestError, check_identity, decide_request, download_extract,
                                 formats_for, needs_identity_check, own_request, read_request, withdraw_request)
from api.audit.log import commit_with_checkpoint
from api.db.models import OUTCOMES, AccessRequest
from api.access.request_input import IdentityCheckCreate
from api.web.auth import DbSession, console_audit, now_ms, require, require_form
from api.service.london import london_time
from api.web.london_input import london_fields
from api.web.pages.request_forms import FormErrors, read_decision
from api.web.pages.requests import GROUND_LABELS, STATUS_TAGS, people
from api.web.refusal import audit_refusal, release, refusal
from api.web.sessions import SignedIn
from api.web.templating import render
from trails.timestamps import parse_timestamp

__all__ = ["router", "SHOWN_ITEMS"]

router = APIRouter(include_in_schema=False)
RequestId = Annotated[int, Path(ge=1, le=2**31 - 1)]
#: Most rows of an extract shown on the page; the download holds them all.
SHOWN_ITEMS = 1000
_DECISION_FIELDS = ("outcome", "reason", "start_date", "start_time", "start_occurrence", "end_date", "end_time",
                    "end_occurrence")


def _extract_view(request: Request, session, me: SignedIn, req: AccessRequest) -> dict | None:
    """The extract shown on the page (audited as a download of the default format), or why not."""
    if req.requester_id != me.user.id or req.status != "decided" or req.outcome not in DATA_OUTCOMES:
        return None
    if req.expires_ms is not None and now_ms(request) >= req.expires_ms:  # nothing is tried, so nothing refused
        return {"problem": f"The approval expired {london_time(req.expires_ms).text}: ask again if you still "
                           f"need the data."}
    if req.kind == "sar":  # a package for the wearer: offered for download, not shown (nothing released yet)
        return {"problem": None, "package": True, "formats": formats_for(req.kind), "map": None}
    audit = console_audit(request)
    try:
        _, ex = download_extract(session, audit, me.user, request.app.state.settings, req.id, None,
                                 now_ms=now_ms(request), flush_store=request.app.state.stream.flush)
    except RequestError as exc:
        release(session, me)
        audit_refusal(request, me, "download_extract", exc.status, str(exc), params={"request_id": req.id})
        return {"problem": str(exc)}
    commit_with_checkpoint(session, audit)
    doc = json.loads(ex.content)
    if req.kind == "trail":
        items = [{"ts_ms": parse_timestamp(f["properties"]["ts"]), "lon": f["geometry"]["coordinates"][0],
                  "lat": f["geometry"]["coordinates"][1], "accuracy_m": f["properties"]["accuracy_m"],
                  "quality": f["properties"]["quality"]} for f in doc["features"]]
    else:
        items = [{**w, "start_ms": parse_timestamp(w["window_start"]), "end_ms": parse_timestamp(w["window_end"])}
                 for w in doc["windows"]]
    return {"problem": None, "items": items[:SHOWN_ITEMS], "n": ex.n_items, "sha256": ex.sha256,
            "formats": formats_for(req.kind), "map": extract_map(doc) if req.kind == "trail" else None}


def extract_map(doc: dict) -> dict:
    """GeoJSON for `static/map.js` from a trail extract's own GeoJSON: every fix, one MultiPoint feature per
    quality (``decisive``, ``uncertain``) with per-point arrays ``n`` (the row number in the table and the
    file), ``ts`` and ``accuracy_m``; nothing the extract does not hold."""
    groups: dict[str, dict[str, list]] = {}
    for i, f in enumerate(doc["features"]):
        p = f["properties"]
        g = groups.setdefault(p["quality"], {"coordinates": [], "n": [], "ts": [], "accuracy_m": []})
        g["coordinates"].append(f["geometry"]["coordinates"][:2])
        g["n"].append(i + 1)
        g["ts"].append(p["ts"])
        g["accuracy_m"].append(p["accuracy_m"])
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": g.pop("coordinates")},
         "properties": {"role": "fix", "quality": quality, **g}} for quality, g in sorted(groups.items())]}


def _decision_form(req: AccessRequest) -> dict[str, str]:
    s_date, s_time, s_occ = london_fields(req.start_ms)
    e_date, e_time, e_occ = london_fields(req.end_ms)
    return {"outcome": "", "reason": "", "start_date": s_date, "start_time": s_time, "start_occurrence": s_occ,
            "end_date": e_date, "end_time": e_time, "end_occurrence": e_occ}


def _page(request: Request, session, me: SignedIn, request_id: int, *, status: int = 200,
          decision: dict[str, str] | None = None, errors: FormErrors | None = None,
          problem: str | None = None) -> Response:
    audit = console_audit(request)
    try:
        req = read_request(session, audit, me.user, request_id, now_ms=now_ms(request))
    except RequestError as exc:
        release(session, me)
        raise refusal(request, me, "get_access_request", exc, params={"request_id": request_id}) from None
    commit_with_checkpoint(session, audit)
    users = people(session, [req.requester_id, req.decided_by, req.identity_checked_by])
    may_decide = is_allowed("decide_access_request", me.user.role) and req.status == "pending"
    own = own_request(session, req, me.user)
    extract = _extract_view(request, session, me, req)
    return render(request, "requests/detail.html", {
        "r": req, "users": users, "ground_labels": GROUND_LABELS, "status_tags": STATUS_TAGS, "outcomes": OUTCOMES,
        "may_decide": may_decide and not own, "own_and_approver": may_decide and own,
        "needs_identity": needs_identity_check(session, req),
        "may_withdraw": req.status == "pending" and req.requester_id == me.user.id,
        "decision": decision or _decision_form(req), "errors": errors or FormErrors(), "problem": problem,
        "extract": extract, "max_days": request.app.state.settings.max_period_days[req.ground]},
        status_code=status)


@router.get("/requests/{request_id}")
def request_page(request: Request, request_id: RequestId, session: DbSession,
                 me: Annotated[SignedIn, Depends(require("get_access_request"))]) -> Response:
    return _page(request, session, me, request_id)


@router.get("/requests/{request_id}/extract")
def extract_download(request: Request, request_id: RequestId, session: DbSession,
                     me: Annotated[SignedIn, Depends(require("download_extract"))], format: str = "") -> Response:
    """The file, as ``GET /v1/access-requests/{id}/extract`` serves it (same audit entry, channel console)."""
    audit = console_audit(request)
    try:
        _, ex = download_extract(session, audit, me.user, request.app.state.settings, request_id,
                                 format[:20] or None, now_ms=now_ms(request),
                                 flush_store=request.app.state.stream.flush)
    except RequestError as exc:
        release(session, me)
        raise refusal(request, me, "download_extract", exc, params={"request_id": request_id}) from None
    commit_with_checkpoint(session, audit)
    return Response(content=ex.content, media_type=ex.media_type,
                    headers={"Content-Disposition": f'attachment; filename="{ex.filename}"',
                             "X-Extract-SHA256": ex.sha256, "Cache-Control": "no-store"})


async def _form(request: Request, names: tuple[str, ...]) -> dict[str, str]:
    raw = await request.form()
    return {k: str(raw.get(k, ""))[:10_000] for k in names}


def _after(request: Request, me: SignedIn, request_id: int, op: str, action, form: dict[str, str]) -> Response:
    """Run `action(session, audit)`; commit and go back to the request, or show why not."""
    with request.app.state.session_factory() as session:
        audit = console_audit(request)
        try:
            action(session, audit)
        except RequestError as exc:
            release(session, me)
            if exc.status in (403, 404):  # not theirs to act on: the error page, as the API's 403/404
                raise refusal(request, me, op, exc, params={"request_id": request_id}) from None
            masked = audit_refusal(request, me, op, exc.status, str(exc), params={"request_id": request_id})
            return _page(request, session, me, request_id, status=exc.status, decision=form or None,
                         problem=masked or str(exc))
        commit_with_checkpoint(session, audit)
    return RedirectResponse(f"/requests/{request_id}", status_code=303)


@router.post("/requests/{request_id}/decision")
async def decide(request: Request, request_id: RequestId,
                 me: Annotated[SignedIn, Depends(require_form("decide_access_request"))]) -> Response:
    form = await _form(request, _DECISION_FIELDS)
    decision, errors = read_decision(form)

    def run() -> Response:
        if decision is None:
            audit_refusal(request, me, "decide_access_request", 422, "request failed validation",
                          params={"request_id": request_id})
            with request.app.state.session_factory() as session:
                return _page(request, session, me, request_id, status=422, decision=form, errors=errors)
        return _after(request, me, request_id, "decide_access_request",
                      lambda s, a: decide_request(s, a, me.user, request.app.state.settings, request_id, decision,
                                                  now_ms=now_ms(request),
                                                  identity_path="the identity check on this page"), form)

    return await run_in_threadpool(run)


@router.post("/requests/{request_id}/identity-check")
async def identity_check(request: Request, request_id: RequestId,
                         me: Annotated[SignedIn, Depends(require_form("check_identity"))]) -> Response:
    note = (await _form(request, ("note",)))["note"]

    def run() -> Response:
        try:
            IdentityCheckCreate(note=note)
        except ValueError:
            audit_refusal(request, me, "check_identity", 422, "request failed validation",
                          params={"request_id": request_id})
            with request.app.state.session_factory() as session:
                return _page(request, session, me, request_id, status=422,
                             problem="Say how the requester's identity was confirmed (at least 20 letters or digits)")
        return _after(request, me, request_id, "check_identity",
                      lambda s, a: check_identity(s, a, me.user, request_id, note, now_ms=now_ms(request)), {})

    return await run_in_threadpool(run)


@router.post("/requests/{request_id}/withdraw")
async def withdraw(request: Request, request_id: RequestId,
                   me: Annotated[SignedIn, Depends(require_form("withdraw_access_request"))]) -> Response:
    return await run_in_threadpool(
        _after, request, me, request_id, "withdraw_access_request",
        lambda s, a: withdraw_request(s, a, me.user, request_id, now_ms=now_ms(request)), {})

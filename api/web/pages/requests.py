"""`/requests` and `/requests/new`: the access requests a person made, and
asking for a new one, on the service the API uses (`api.access.requests`).

`/requests` lists requests newest first, as ``GET /v1/access-requests``
(requesters see only their own; audited ``request.list``, channel console).
`/requests/new` asks in two steps so nothing is sent by surprise: the form
(the wearer first; staff then pick the reference from the wearer's breaches,
a read audited as the API's ``breach.read``), then a check page showing the
period in UK time and, before anything is recorded, the warning the API
gives when the period is longer than the ground allows (``too_broad``). The
check step runs only the checks that need nothing about the wearer
(`api.access.requests.check_period`), so it tells an external requester
nothing about who is monitored; sending runs every rule, and a refusal is
audited and, for an external requester, masked exactly as the API masks it.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from api.access.permissions import is_allowed
from api.access.requests import (InvalidError, RequestError, check_period, create_request, is_too_broad,
                                 list_requests)
from api.audit.log import commit_with_checkpoint
from api.db.models import KINDS, AccessRequest, BreachRow, User
from api.settings import GROUNDS
from api.service.london import london_time
from api.web.auth import DbSession, console_audit, now_ms, require, require_form
from api.web.pages.request_forms import NEW_FIELDS, FormErrors, read_new_request
from api.web.refusal import audit_refusal, release
from api.web.sessions import SignedIn
from api.web.templating import render

__all__ = ["router", "GROUND_LABELS", "STATUS_TAGS", "people"]

router = APIRouter(include_in_schema=False)

GROUND_LABELS = {"bail_breach": "Breach of immigration bail conditions", "absconded": "The person has absconded",
                 "article8": "Article 8 representations or further submissions",
                 "breach_allegation": "Allegation or intelligence of EM or bail breaches",
                 "sar_or_legal": "Subject access request or legal challenge"}
#: status or outcome -> (label, GOV.UK tag colour)
STATUS_TAGS = {"pending": ("Waiting for a decision", "blue"), "withdrawn": ("Withdrawn", "grey"),
               "data_provided": ("Data provided", "green"), "partial_data_provided": ("Partial data provided", "green"),
               "rejected_insufficient_justification": ("Rejected: insufficient justification", "red"),
               "rejected_too_broad": ("Rejected: too broad", "red"), "rejected_other": ("Rejected", "red"),
               "withdrawn_by_requester": ("Withdrawn", "grey")}


def people(session, ids) -> dict[int, User]:
    """Users by id, for names on a page."""
    ids = {i for i in ids if i is not None}
    return {u.id: u for u in session.scalars(select(User).where(User.id.in_(ids)))} if ids else {}


def _globals() -> dict:
    return {"ground_labels": GROUND_LABELS, "status_tags": STATUS_TAGS}


@router.get("/requests")
def requests_page(request: Request, session: DbSession,
                  me: Annotated[SignedIn, Depends(require("list_access_requests"))],
                  show: Annotated[str, Query(pattern="^(mine|all)$")] = "") -> Response:
    """Newest first: the person's own by default when they may ask (``show=all``
    for every request their role may read); a requester's own only, always
    (the service applies the API's rule)."""
    can_ask = is_allowed("create_access_request", me.user.role)
    show = show or ("mine" if can_ask else "all")
    audit = console_audit(request)
    rows = list_requests(session, audit, me.user, now_ms=now_ms(request), limit=200, only_mine=show == "mine")
    users = people(session, [r.requester_id for r in rows])
    commit_with_checkpoint(session, audit)
    return render(request, "requests/list.html", {**_globals(), "rows": rows, "users": users, "can_ask": can_ask,
                                                  "show": show})


def _breaches(request: Request, session, me: SignedIn, subject_id: str) -> list[BreachRow]:
    """The wearer's breaches to pick a reference from, read as ``GET /v1/subjects/{id}/breaches``
    reads them (same ``breach.read`` entry); none for a role that may not read them."""
    if not subject_id or not is_allowed("list_subject_breaches", me.user.role):
        return []
    q = (select(BreachRow).where(BreachRow.subject_id == subject_id, BreachRow.status != "withdrawn")
         .order_by(BreachRow.start_ms, BreachRow.breach_id))
    rows = list(session.scalars(q))
    audit = console_audit(request)
    audit.append(session, action="breach.read", actor=me.user, subject_id=subject_id, now_ms=now_ms(request),
                 detail={"priority": None, "type": None, "include_withdrawn": False,
                         "breach_ids": [b.breach_id for b in rows]})
    commit_with_checkpoint(session, audit)
    return [b for b in rows if b.kind == "breach"]


def _form_page(request: Request, session, me: SignedIn, form: dict[str, str], errors: FormErrors | None = None,
               *, status: int = 200, refused: str | None = None) -> Response:
    return render(request, "requests/new.html", {
        **_globals(), "form": form, "errors": errors or FormErrors(), "refused": refused, "kinds": KINDS,
        "grounds": GROUNDS, "breaches": _breaches(request, session, me, form.get("subject_id", "")),
        "can_pick": is_allowed("list_subject_breaches", me.user.role),
        "max_days": request.app.state.settings.max_period_days, "london_text": lambda ms: london_time(ms).text},
        status_code=status)


@router.get("/requests/new")
def new_request_page(request: Request, session: DbSession,
                     me: Annotated[SignedIn, Depends(require("create_access_request"))],
                     subject_id: Annotated[str, Query(max_length=200)] = "",
                     ground: Annotated[str, Query(max_length=40)] = "",
                     reference: Annotated[str, Query(max_length=200)] = "") -> Response:
    """`subject_id`, `ground` and `reference` (a breach id) prefill the form: a breach page's
    "request access" link names its wearer, `bail_breach` and itself. Nothing is sent until
    the person checks and submits it."""
    form = {"subject_id": subject_id.strip(), "kind": "trail", "urgency": "routine"}
    if ground in GROUNDS:
        form["ground"] = ground
    if reference.strip():
        form["breach"] = reference.strip()
    return _form_page(request, session, me, form)


@router.post("/requests/new")
async def new_request_post(request: Request, me: Annotated[SignedIn, Depends(require_form("create_access_request"))]
                           ) -> Response:
    """``step``: ``check`` (show the check page), ``change`` (back to the form), ``send`` (record it)."""
    raw = await request.form()
    form = {k: str(raw.get(k, ""))[:10_000] for k in NEW_FIELDS}
    step = str(raw.get("step", "check"))
    return await run_in_threadpool(_new_request_step, request, me, form, step)


def _new_request_step(request: Request, me: SignedIn, form: dict[str, str], step: str) -> Response:
    with request.app.state.session_factory() as session:
        if step == "change":
            return _form_page(request, session, me, form)
        new, errors = read_new_request(form)
        if new is not None:
            try:
                check_period(new.start_ms, new.end_ms, now_ms(request))
            except InvalidError as exc:
                errors.add("start_date", str(exc))
                new = None
        if new is None:
            if step == "send":  # the API audits a call that fails validation
                audit_refusal(request, me, "create_access_request", 422, "request failed validation",
                              subject_id=form.get("subject_id") or None)
            return _form_page(request, session, me, form, errors, status=422)
        if step != "send":
            settings = request.app.state.settings
            return render(request, "requests/confirm.html", {
                **_globals(), "form": form, "new": new, "fields": NEW_FIELDS,
                "too_broad": is_too_broad(settings, new.ground, new.start_ms, new.end_ms),
                "max_days": settings.max_period_days[new.ground]})
        audit = console_audit(request)
        try:
            req: AccessRequest = create_request(session, audit, me.user, request.app.state.settings, new,
                                                now_ms=now_ms(request))
        except RequestError as exc:
            release(session, me)
            masked = audit_refusal(request, me, "create_access_request", exc.status, str(exc),
                                   subject_id=new.subject_id)
            return _form_page(request, session, me, form, status=exc.status if masked is None else 403,
                              refused=masked or str(exc))
        commit_with_checkpoint(session, audit)
        return RedirectResponse(f"/requests/{req.id}", status_code=303)

"""`/audit`: the audit log in the console, for auditors and admins: the
same list as `GET /v1/audit/entries` (`api.audit.entries.read_entries`,
newest first, filters actor, action, wearer pseudonym, from/to as London
dates; audited as ``audit.read`` with ``read: entries`` and the filters,
channel console), the latest signed checkpoint, and "verify now".

"Verify now" (POST, CSRF) runs `api.audit.verify.verify_log`, the check
`tagtrail audit verify` runs (there is no second implementation), on this
service's home, and shows its one-line result. It is read-only, like the
command; that an auditor ran it, and what it found, is an ``audit.read``
entry with ``read: verify``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import select

from api.audit.entries import EntryFilter, FilterError, check_filter, parse_bound, read_entries
from api.audit.log import commit_with_checkpoint
from api.audit.verify import VerifyReport, verify_log
from api.db.models import AuditEntry
from api.web.auth import ConsoleRefused, DbSession, console_audit, now_ms, require, require_form
from api.web.paging import page_count, read_page, read_params, view_query
from api.web.sessions import SignedIn
from api.web.templating import render
from trails.timestamps import parse_timestamp

__all__ = ["router", "PAGE_SIZE", "AuditView", "parse_view"]

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
_PARAMS = ("actor", "action", "wearer", "from", "to", "page")


@dataclass(frozen=True)
class AuditView:
    """The filters as the page's form holds them ('' for any)."""

    actor: str = ""
    action: str = ""
    wearer: str = ""
    from_: str = ""
    to: str = ""
    page: int = 1

    def to_filter(self) -> EntryFilter:
        return EntryFilter(actor=self.actor or None, action=self.action or None, wearer=self.wearer or None,
                           from_ms=parse_bound("from", self.from_, end=False) if self.from_ else None,
                           to_ms=parse_bound("to", self.to, end=True) if self.to else None,
                           limit=PAGE_SIZE, offset=(self.page - 1) * PAGE_SIZE)

    def query(self, **change: object) -> str:
        values = {"actor": self.actor, "action": self.action, "wearer": self.wearer, "from": self.from_,
                  "to": self.to, "page": self.page} | change
        return view_query(values, {"page": 1})


def parse_view(pairs: list[tuple[str, str]]) -> tuple[AuditView, EntryFilter]:
    """The view a query string asks for and its filter; `ConsoleRefused` (400) naming what is wrong."""
    got, problems = read_params(pairs, _PARAMS, "the audit log")
    page = read_page(got.get("page", ""), 1_000_000, problems)
    view = AuditView(actor=got.get("actor", ""), action=got.get("action", ""), wearer=got.get("wearer", ""),
                     from_=got.get("from", ""), to=got.get("to", ""), page=page)
    f = None
    try:
        f = view.to_filter()
        check_filter(f)
    except FilterError as exc:
        problems.append(str(exc))
    if problems or f is None:
        raise ConsoleRefused(400, "The audit log cannot show that", "; ".join(problems)[:500])
    return view, f


def _checkpoint(request: Request) -> dict | None:
    """The latest signed checkpoint as written, with its signing time in ms (for London time)."""
    cp = request.app.state.audit.latest_checkpoint()
    if cp is None:
        return None
    try:
        signed_ms = parse_timestamp(cp["ts"])
    except (KeyError, ValueError):
        signed_ms = None
    return {**cp, "signed_ms": signed_ms}


def _page(request: Request, session, me: SignedIn, view: AuditView, f: EntryFilter,
          verified: VerifyReport | None = None, status_code: int = 200) -> Response:
    audit = console_audit(request)
    page = read_entries(session, f)
    actions = list(session.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action)))
    audit.append(session, action="audit.read", actor=me.user, now_ms=now_ms(request),
                 detail={"read": "entries", **f.described()})
    commit_with_checkpoint(session, audit)
    pages = page_count(page.total, PAGE_SIZE)
    return render(request, "audit/audit.html", {
        "view": view, "entries": page.entries, "total": page.total, "pages": pages, "actions": actions,
        "checkpoint": _checkpoint(request), "verified": verified}, status_code=status_code)


@router.get("/audit")
def audit_page(request: Request, session: DbSession,
               me: Annotated[SignedIn, Depends(require("list_audit_entries"))]) -> Response:
    view, f = parse_view(list(request.query_params.multi_items()))
    return _page(request, session, me, view, f)


@router.post("/audit/verify")
def verify_now(request: Request, session: DbSession,
               me: Annotated[SignedIn, Depends(require_form("audit_checkpoint"))]) -> Response:
    """Run `tagtrail audit verify`'s check now and show the result above the newest entries."""
    report = verify_log(request.app.state.settings, session, now_ms=now_ms(request))
    session.rollback()  # verify only read: end its transaction before the audit entry's
    audit = console_audit(request)
    audit.append(session, action="audit.read", actor=me.user, now_ms=now_ms(request),
                 detail={"read": "verify", "ok": report.ok, "checked_size": report.checked_size,
                         "first_bad_index": report.first_bad_index})
    commit_with_checkpoint(session, audit)
    view = AuditView()
    return _page(request, session, me, view, view.to_filter(), verified=report)

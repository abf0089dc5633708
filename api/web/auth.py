"""Who is asking, and may they: the console's dependencies.

- `DbSession`: a database session for the request, rolled back at the end
  unless the page committed (`api.audit.log.commit_with_checkpoint`).
- `signed_in`: the live session behind the cookie (`api.web.sessions`), or
  `SignInRequired` (answered with a redirect to /login and the way back).
- `require(op)`: a page or form needs the API operation `op`; the role is
  checked with `api.access.permissions.is_allowed`, the API's own table
  (there is no second one). A refusal is `ConsoleRefused` (the 403 page)
  and, for an operation on personal data, an ``access.refused`` audit entry
  like the API's, with channel console.
- `require_form(op)`: as `require`, for a POST: the form's CSRF token
  (`api.web.csrf`) is checked first, and a missing or wrong one is a 403
  before anything else happens.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.access.permissions import PERSONAL_DATA_OPS, is_allowed
from api.audit.refusals import record_refusal
from api.db.session import request_session
from api.web.csrf import FIELD, session_token, tokens_match
from api.web.sessions import COOKIE, SignedIn, load_session

__all__ = ["DbSession", "SignInRequired", "ConsoleRefused", "signed_in", "require", "require_form", "console_audit",
           "now_ms", "safe_next", "sign_in_redirect"]


class SignInRequired(Exception):
    """No live session: the browser is sent to /login, and back to `next_path` after."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class ConsoleRefused(Exception):
    """A page answered with the error page: `status` (403, 404, 400, 409), a title and one message."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def db_session(request: Request) -> Iterator[Session]:
    with request_session(request.app.state.session_factory) as session:
        yield session


DbSession = Annotated[Session, Depends(db_session)]


def now_ms(request: Request) -> int:
    return request.app.state.clock()


def console_audit(request: Request):
    """The audit log as the console uses it: its entries say ``channel: console``."""
    return request.app.state.audit.via("console")


def safe_next(path: str | None, default: str = "/") -> str:
    """`path` if it is a path on this site (``/queue?x=1``), else `default`: never another origin."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path or len(path) > 2000:
        return default
    return path


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def signed_in(request: Request, session: DbSession) -> SignedIn:
    """The live session behind the cookie (touched: its idle time starts again)."""
    settings = request.app.state.settings
    found = load_session(session, request.cookies.get(COOKIE), now_ms=now_ms(request),
                         idle_s=settings.console_idle_s, max_s=settings.console_max_s)
    session.commit()  # the touch (or the expiry) is its own short transaction: the page's work is another
    if found is None:
        raise SignInRequired(_here(request) if request.method == "GET" else "/")
    request.state.console = found
    request.state.console_who = found.who  # read now, while the user is loaded (error pages need it later)
    request.state.csrf_token = session_token(found.session_id)
    return found


def _check_role(request: Request, me: SignedIn, op: str) -> None:
    if is_allowed(op, me.user.role):
        return
    reason = f"role {me.user.role!r} may not call {op}"
    if op in PERSONAL_DATA_OPS:
        record_refusal(console_audit(request), request.app.state.session_factory, user=me.user, operation=op,
                       target={"params": dict(request.path_params), "subject_id": None}, status=403,
                       reason=reason, now_ms=now_ms(request))
    raise ConsoleRefused(403, "You cannot see this page",
                         f"Your role ({me.user.role}) does not give access to this page. Ask an administrator if "
                         f"you need it for your work.")


def require(op: str) -> Callable[..., SignedIn]:
    """Dependency: signed in, with a role that may call API operation `op`."""

    def check(request: Request, me: Annotated[SignedIn, Depends(signed_in)]) -> SignedIn:
        _check_role(request, me, op)
        return me

    return check


def require_form(op: str | None) -> Callable[..., SignedIn]:
    """Dependency for a POSTed form: signed in, the CSRF token right, then the
    role as `require` (`op` None: any signed-in user, e.g. signing out)."""

    async def check(request: Request, me: Annotated[SignedIn, Depends(signed_in)]) -> SignedIn:
        form = await request.form()
        given = form.get(FIELD)
        if not tokens_match(session_token(me.session_id), given if isinstance(given, str) else None):
            raise ConsoleRefused(403, "This form could not be sent",
                                 "The form was missing its security token or it had expired. Go back, reload the "
                                 "page and try again.")
        if op is not None:
            await run_in_threadpool(_check_role, request, me, op)  # a refusal is audited: database work
        return me

    return check


def sign_in_redirect(next_path: str) -> str:
    return f"/login?next={quote(next_path, safe='/')}"

"""`GET /login`, `POST /login`, `POST /logout`, and `/` (the start page).

Signing in takes the API token `tagtrail users add` printed (field
``token``) and starts a server-side session (`api.web.sessions`); the cookie
is HttpOnly, SameSite=Strict, and Secure when the request came over HTTPS.
The machine account (role ``feed``) cannot sign in. Sign-in and sign-out are
audited (``console.sign_in``, ``console.sign_out``); wrong tokens are
counted into the same per-minute ``auth.failed`` summary as the API's.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from api.access.users import authenticate
from api.audit.log import commit_with_checkpoint
from api.audit.refusals import record_failed_auth
from api.web.auth import ConsoleRefused, DbSession, console_audit, now_ms, require_form, safe_next, signed_in
from api.web.csrf import FIELD, LOGIN_COOKIE, new_login_token, tokens_match
from api.web.sessions import COOKIE, SignedIn, end_session, start_session
from api.web.templating import nav_for, render

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
_LOGIN_CSRF_MAX_AGE_S = 3600


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _form(request: Request, next_path: str, *, error: str | None = None, status_code: int = 200) -> Response:
    token = new_login_token()
    response = render(request, "login.html", {"error": error, "next_path": safe_next(next_path, "/"),
                                              "login_csrf": token,
                                              "idle_minutes": request.app.state.settings.console_idle_s // 60},
                      status_code=status_code)
    response.set_cookie(LOGIN_COOKIE, token, max_age=_LOGIN_CSRF_MAX_AGE_S, path="/login", httponly=True,
                        samesite="strict", secure=_secure(request))
    return response


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    return _form(request, next)


@router.post("/login")
def login(request: Request, session: DbSession, token: Annotated[str, Form(max_length=512)] = "",
          next: Annotated[str, Form(max_length=2000)] = "/",
          csrf_token: Annotated[str, Form(alias=FIELD, max_length=200)] = "") -> Response:
    if not tokens_match(request.cookies.get(LOGIN_COOKIE), csrf_token):
        raise ConsoleRefused(403, "This form could not be sent",
                             "The sign-in form was missing its security token or it had expired. Reload the page "
                             "and try again.")
    user = authenticate(session, token.strip()) if token.strip() else None
    session.commit()
    if user is None or user.revoked_ms is not None or user.role == "feed":
        counts = request.app.state.failed_auth.add("console_sign_in")
        if counts:
            record_failed_auth(request.app.state.audit, request.app.state.session_factory, counts,
                               now_ms=now_ms(request))
        return _form(request, next, error="Enter a valid access token", status_code=401)
    audit = console_audit(request)
    now = now_ms(request)
    session_id = start_session(session, user, now_ms=now)
    audit.append(session, action="console.sign_in", actor=user, now_ms=now)
    commit_with_checkpoint(session, audit)
    response = RedirectResponse(safe_next(next, "/"), status_code=303)
    response.set_cookie(COOKIE, session_id, path="/", httponly=True, samesite="strict", secure=_secure(request))
    response.delete_cookie(LOGIN_COOKIE, path="/login", httponly=True, samesite="strict", secure=_secure(request))
    return response


@router.post("/logout")
def logout(request: Request, session: DbSession,
           me: Annotated[SignedIn, Depends(require_form(None))]) -> Response:
    audit = console_audit(request)
    now = now_ms(request)
    end_session(session, me.session_id, now_ms=now)
    audit.append(session, action="console.sign_out", actor=me.user, now_ms=now)
    commit_with_checkpoint(session, audit)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request))
    return response


@router.get("/")
def start(request: Request, me: Annotated[SignedIn, Depends(signed_in)]) -> Response:
    """The first page the role can use (the queue for staff)."""
    items = nav_for(request, me.user.role)
    if items:
        return RedirectResponse(items[0]["href"], status_code=303)
    return render(request, "error.html", {"title": "Nothing to show yet",
                                          "message": "There is no console page for your role yet."})

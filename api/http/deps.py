"""FastAPI dependencies: the database session, the current user, the role
check, and the one place a request's unit of work is committed.

Aliases (full-stack-fastapi-template style):

- `SessionDep`: a session for this request; nothing is committed unless the
  endpoint calls `commit`, and anything uncommitted is rolled back.
- `CurrentUser`: the user behind ``Authorization: Bearer TOKEN``; missing,
  unknown or revoked tokens are 401 with ``WWW-Authenticate: Bearer``.
- `AuditDep`, `SettingsDep`, `ClockDep`: what `create_app` put on app.state.

Every `/v1` router uses `api.http.guard.GuardedRoute`, which authenticates the
caller and checks the role before the body is read; `current_user` loads
that user, and `authorize` (every router's dependency) checks the role again.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.http.errors import Forbidden, Unauthorized
from api.db.models import User
from api.db.session import request_session
from api.access.permissions import PERMISSIONS
from api.settings import Settings

__all__ = ["SessionDep", "CurrentUser", "AuditDep", "SettingsDep", "ClockDep", "authorize", "commit",
           "get_session", "current_user"]

log = logging.getLogger("tagtrail.api")

_bearer = HTTPBearer(auto_error=False, description="an API token from `tagtrail demo` (HOME/demo-tokens.txt)")


def get_session(request: Request) -> Iterator[Session]:
    """One session per request (`api.db.session.request_session`); endpoints commit through `commit`."""
    with request_session(request.app.state.session_factory) as session:
        # api.http.guard rolls it back itself before it records a refused call (the cleanup runs
        # only after the response, and until then this session may hold the write lock)
        request.scope.setdefault("state", {})["tagtrail_session"] = session
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def _audit(request: Request):
    """The audit log as the API uses it: every entry says ``channel: api`` (the console's say ``console``)."""
    return request.app.state.audit.via("api")


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _clock(request: Request) -> Callable[[], int]:
    return request.app.state.clock


AuditDep = Annotated[object, Depends(_audit)]
SettingsDep = Annotated[Settings, Depends(_settings)]
ClockDep = Annotated[Callable[[], int], Depends(_clock)]


def current_user(request: Request, session: SessionDep,
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> User:
    """The user `api.http.guard.GuardedRoute` authenticated before the body was read,
    loaded into this request's session (and checked again: a token revoked
    meanwhile is refused). `credentials` is declared for the OpenAPI document
    only; the guard has already checked it."""
    user_id = request.scope.get("state", {}).get("tagtrail_user_id")
    if user_id is None:  # a route outside the guard is never reachable
        raise Forbidden("this operation is not behind the access guard (api.http.guard.GuardedRoute)")
    user = session.get(User, user_id)
    if user is None or user.revoked_ms is not None:
        raise Unauthorized("invalid or revoked token")
    # end the read: every transaction holds the database's one write lock (`api.db.session`), and the
    # endpoint's work is its own transaction
    session.commit()
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def authorize(request: Request, user: CurrentUser) -> User:
    """Router-level check, behind the guard's: the route's operation id must
    allow the caller's role (`api.access.permissions.PERMISSIONS`)."""
    route = request.scope.get("route")
    op = getattr(route, "operation_id", None)
    roles = PERMISSIONS.get(op or "")
    if roles is None:  # a route missing from the table is never reachable
        raise Forbidden(f"operation {op!r} is not in the permissions table")
    if user.role not in roles:
        raise Forbidden(f"role {user.role!r} may not call {op}: allowed roles are {', '.join(sorted(roles))}")
    return user


def commit(session: Session, audit) -> None:
    """Commit the business change and its audit entry together, then write a
    checkpoint of the audit log (`api.audit.log.commit_with_checkpoint`, the
    same step the console ends with)."""
    from api.audit.log import commit_with_checkpoint

    commit_with_checkpoint(session, audit)

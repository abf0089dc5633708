"""FastAPI dependencies: the database session, the current user, the role
check, and the one place a request's unit of work is committed.

Aliases (full-stack-fastapi-template style):

- `SessionDep`: a session for this request; nothing is committed unless the
  endpoint calls `commit`, and anything uncommitted is rolled back.
- `CurrentUser`: the user behind ``Authorization: Bearer TOKEN``; missing,
  unknown or revoked tokens are 401 with ``WWW-Authenticate: Bearer``.
- `AuditDep`, `SettingsDep`, `ClockDep`: what `create_app` put on app.state.

Every `/v1` router depends on `authorize`, which checks the caller's role
against `api.permissions.PERMISSIONS` for the route's operation id.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from .errors import Forbidden, Unauthorized
from .models import User
from .permissions import PERMISSIONS
from .settings import Settings

__all__ = ["SessionDep", "CurrentUser", "AuditDep", "SettingsDep", "ClockDep", "authorize", "commit",
           "get_session", "current_user"]

log = logging.getLogger("tagtrail.api")

_bearer = HTTPBearer(auto_error=False, description="an API token from `tagtrail demo` (HOME/demo-tokens.txt)")


def get_session(request: Request) -> Iterator[Session]:
    """One session per request. Endpoints commit through `commit`; whatever
    is left uncommitted (an error, a denied call) is rolled back here."""
    factory = request.app.state.session_factory
    session = factory()
    try:
        yield session
    finally:
        try:
            session.rollback()
        finally:
            session.close()


SessionDep = Annotated[Session, Depends(get_session)]


def _audit(request: Request):
    return request.app.state.audit


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _clock(request: Request) -> Callable[[], int]:
    return request.app.state.clock


AuditDep = Annotated[object, Depends(_audit)]
SettingsDep = Annotated[Settings, Depends(_settings)]
ClockDep = Annotated[Callable[[], int], Depends(_clock)]


def current_user(session: SessionDep,
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> User:
    """The user behind the bearer token, or 401."""
    from .users import authenticate

    if credentials is None or not credentials.credentials:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer TOKEN'")
    token = credentials.credentials
    if len(token) > 512:
        raise Unauthorized("invalid or revoked token")
    user = authenticate(session, token)
    if user is None or user.revoked_ms is not None:
        raise Unauthorized("invalid or revoked token")
    # end the read: every transaction holds the database's one write lock (`api.db`), and a
    # request should not hold it while it parses its body; the endpoint's work is its own transaction
    session.commit()
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def authorize(request: Request, user: CurrentUser) -> User:
    """Router-level role check: the route's operation id must allow the caller's role."""
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
    checkpoint of the audit log (outside the database). A failed checkpoint
    is logged, not raised: the entries are committed, and the next checkpoint
    covers them."""
    session.commit()
    try:
        audit.write_checkpoint(session)
        session.commit()  # end the transaction the checkpoint opened (it only reads)
    except Exception:  # pragma: no cover - disk full and the like
        session.rollback()
        log.exception("audit checkpoint not written")

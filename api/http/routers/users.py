"""`/v1/admin/users`: the people and machine accounts that may sign in.

Adding and revoking were only the CLI's (`tagtrail users`), so the console
borrowed another admin operation to authorise them; they are operations of
their own now (`list_users`, `add_user`, `revoke_user`, admin only), shared
by the API, the console's /admin page and the hand-written role table. The
rules and the ``user.add`` / ``user.revoke`` audit entries are
`api.access.users`; a new token is shown once, in the answer that creates it
(only its hash is kept).
"""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from api.access.request_input import In, fmt_ts
from api.access.users import UserError, add_user, list_users, revoke_user, set_email
from api.db.models import User
from api.http.deps import AuditDep, ClockDep, CurrentUser, SessionDep, authorize, commit
from api.http.errors import Unprocessable
from api.http.guard import GuardedRoute

router = APIRouter(prefix="/admin/users", tags=["users"], dependencies=[Depends(authorize)],
                   route_class=GuardedRoute)

UserId = Annotated[int, Path(ge=1, le=2**31 - 1, description="user id")]
Role = Literal["caseworker", "approver", "auditor", "admin", "requester", "feed"]


class UserPublic(BaseModel):
    id: int
    name: str
    role: str
    org: str | None
    email: str | None = Field(None, description="where urgent records of the wearers this user owns are sent")
    created: str
    revoked: str | None = Field(None, description="when the account was revoked; null while it is active")


class UserCreate(In):
    name: str = Field(min_length=1, max_length=200)
    role: Role
    org: str | None = Field(None, max_length=200, description="police or probation for a requester")
    email: str | None = Field(None, max_length=320, description="for a caseworker: urgent records of the wearers "
                                                                "they own are emailed here")


class EmailIn(In):
    email: str | None = Field(None, max_length=320, description="null: no address")


class UserCreated(BaseModel):
    user: UserPublic
    token: str = Field(description="the new API token, shown this once (only its hash is stored)")


def _public(u: User) -> UserPublic:
    return UserPublic(id=u.id, name=u.name, role=u.role, org=u.org, email=u.email, created=fmt_ts(u.created_ms),
                      revoked=None if u.revoked_ms is None else fmt_ts(u.revoked_ms))


@router.get("", operation_id="list_users", response_model=list[UserPublic])
def get_users(session: SessionDep, user: CurrentUser) -> list[UserPublic]:
    """Every account, oldest first, revoked ones included.

    Roles: admin.
    """
    return [_public(u) for u in list_users(session)]


@router.post("", operation_id="add_user", response_model=UserCreated, status_code=201)
def post_user(body: UserCreate, session: SessionDep, user: CurrentUser, audit: AuditDep,
              clock: ClockDep) -> UserCreated:
    """Add an account; the answer carries its token, once.

    Roles: admin.

    422 for a name an active account already has (compared as persons), or
    an external account without org police or probation.
    """
    try:
        new, token = add_user(session, audit, name=body.name.strip(), role=body.role,
                              org=(body.org or "").strip() or None, actor=user, now_ms=clock(),
                              email=(body.email or "").strip() or None)
    except UserError as exc:
        raise Unprocessable(str(exc)) from None
    out = UserCreated(user=_public(new), token=token)
    commit(session, audit)
    return out


@router.post("/{user_id}/revoke", operation_id="revoke_user", response_model=UserPublic)
def post_revoke(user_id: UserId, session: SessionDep, user: CurrentUser, audit: AuditDep,
                clock: ClockDep) -> UserPublic:
    """Revoke an account: its token and console sessions stop working at once.

    Roles: admin.

    422 if there is no active account with that id.
    """
    try:
        gone = revoke_user(session, audit, user_id=user_id, actor=user, now_ms=clock())
    except UserError as exc:
        raise Unprocessable(str(exc)) from None
    out = _public(gone)
    commit(session, audit)
    return out


@router.put("/{user_id}/email", operation_id="set_user_email", response_model=UserPublic)
def put_email(user_id: UserId, body: EmailIn, session: SessionDep, user: CurrentUser, audit: AuditDep,
              clock: ClockDep) -> UserPublic:
    """Set (or, with null, remove) an account's email address: urgent records of the wearers a caseworker
    owns are emailed there as well as to the team (`notify_email_to`).

    Roles: admin. 422 for a malformed address or no active account with that id.
    """
    try:
        row = set_email(session, audit, user_id=user_id, email=(body.email or "").strip() or None, actor=user,
                        now_ms=clock())
    except UserError as exc:
        raise Unprocessable(str(exc)) from None
    out = _public(row)
    commit(session, audit)
    return out

"""API users and their tokens.

A token is 32 random bytes (``secrets.token_urlsafe``), shown once when the
user is made and stored only as its SHA-256: a random 256-bit secret needs no
salt or slow hash (there is no dictionary to attack), and hashing lets the
lookup be an indexed equality on the digest, so no token is ever compared
character by character. Adding and revoking users are audited, like every
other change (governance.md: "every user change").
"""
from __future__ import annotations

import hashlib
import secrets
import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from trails.errors import InputError

from .models import ROLES, User

__all__ = ["EXTERNAL_ORGS", "UserError", "add_user", "revoke_user", "authenticate", "token_digest", "list_users"]

#: Organisations an external `requester` may belong to (External Agency Requests).
EXTERNAL_ORGS: tuple[str, ...] = ("police", "probation")
_MAX_NAME = 200
_MAX_ORG = 100


class UserError(InputError):
    """A user change that cannot be made (bad role, unknown or duplicate name)."""


def token_digest(token: str) -> str:
    """Hex SHA-256 of a token: what the database stores and looks up."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _active(session: Session, name: str) -> User | None:
    return session.scalars(select(User).where(User.name == name, User.revoked_ms.is_(None))).first()


def add_user(session: Session, audit, *, name: str, role: str, org: str | None = None,
             actor: User | None = None, now_ms: int | None = None) -> tuple[User, str]:
    """Create a user and return it with its token (the only time the token exists in clear).

    The caller commits (the user and its ``user.add`` audit entry go in one
    transaction) and then writes an audit checkpoint.

    Raises
    ------
    UserError
        Unknown role; a `requester` without org ``police`` or ``probation``;
        an empty or over-long name or org; a name an active user already has
        (names appear in the audit log, so they must say who acted).
    """
    if not isinstance(name, str) or not name.strip() or len(name) > _MAX_NAME:
        raise UserError(f"user name must be 1..{_MAX_NAME} characters, got {name!r}")
    if role not in ROLES:
        raise UserError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if org is not None and (not org.strip() or len(org) > _MAX_ORG):
        raise UserError(f"org must be 1..{_MAX_ORG} characters, got {org!r}")
    if role == "requester" and org not in EXTERNAL_ORGS:
        raise UserError(f"a requester is an external agency: --org must be one of {', '.join(EXTERNAL_ORGS)}, "
                        f"got {org!r}")
    if _active(session, name) is not None:
        raise UserError(f"an active user named {name!r} already exists (revoke it first)")
    now = _now_ms() if now_ms is None else now_ms
    token = secrets.token_urlsafe(32)
    user = User(name=name, role=role, org=org, token_sha256=token_digest(token), created_ms=now)
    session.add(user)
    session.flush()
    audit.append(session, action="user.add", actor=actor, now_ms=now,
                 detail={"user_id": user.id, "name": name, "role": role, "org": org})
    return user, token


def revoke_user(session: Session, audit, *, name: str | None = None, user_id: int | None = None,
                actor: User | None = None, now_ms: int | None = None) -> User:
    """Revoke the active user with `name` (or id `user_id`): their token stops working at once.

    The caller commits. Raises `UserError` if there is no such active user.
    """
    if (name is None) == (user_id is None):
        raise UserError("give exactly one of: a user name or a user id")
    if user_id is not None:
        user = session.get(User, user_id)
        if user is None or user.revoked_ms is not None:
            raise UserError(f"no active user with id {user_id}")
    else:
        user = _active(session, name)
        if user is None:
            raise UserError(f"no active user named {name!r}")
    now = _now_ms() if now_ms is None else now_ms
    user.revoked_ms = now
    session.flush()
    audit.append(session, action="user.revoke", actor=actor, now_ms=now,
                 detail={"user_id": user.id, "name": user.name, "role": user.role, "org": user.org})
    return user


def authenticate(session: Session, token: str) -> User | None:
    """The user whose token this is (revoked or not: the caller decides), or None."""
    return session.scalars(select(User).where(User.token_sha256 == token_digest(token))).first()


def list_users(session: Session) -> list[User]:
    """All users, oldest first (revoked ones included, with `revoked_ms`)."""
    return list(session.scalars(select(User).order_by(User.id)))

"""API users and their tokens.

A token is 32 random bytes (``secrets.token_urlsafe``), shown once when the
user is made and stored only as its SHA-256: a random 256-bit secret needs no
salt or slow hash (there is no dictionary to attack), and hashing lets the
lookup be an indexed equality on the digest, so no token is ever compared
character by character. Adding and revoking users are audited, like every
other change (governance.md: "every user change").

A user name names a person, for good. Accounts come and go: revoking
caseworker ``alice`` and adding ``alice`` again as an approver gives the same
person a new account (new token, new role), and the two-person rule compares
persons (`User.person`, the name normalised by `person_key`), so she can never
decide or confirm a request she made from the old account. Names are compared
after NFKC normalisation, case folding, dropping invisible characters and
collapsing spaces, so ``Alice`` or ``alice`` with a zero-width space is the same
person as ``alice``. The cost falls on the safe side: a different person who
happens to get a former user's name is kept off that user's requests too; give
them a distinguishable name.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import time
import unicodedata

from sqlalchemy import select
from sqlalchemy.orm import Session

from trails.errors import InputError

from api.db.models import ROLES, User

__all__ = ["EXTERNAL_ORGS", "UserError", "add_user", "set_email", "revoke_user", "authenticate", "token_digest", "list_users",
           "person_key", "accounts_of"]

#: Organisations an external `requester` may belong to (External Agency Requests).
EXTERNAL_ORGS: tuple[str, ...] = ("police", "probation")
_MAX_NAME = 200
_MAX_ORG = 100
#: An email address as far as sending needs one: one @, no spaces or angle brackets, a dotted domain.
_EMAIL = re.compile(r"^[^@\s<>,;]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


class UserError(InputError):
    """A user change that cannot be made (bad role, unknown or duplicate name)."""


def token_digest(token: str) -> str:
    """Hex SHA-256 of a token: what the database stores and looks up."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def person_key(name: str) -> str:
    """The person a user name names: NFKC, case-folded, without invisible
    (format and control) characters, runs of white space as one space.

    >>> person_key("  Alice\u200b  Smith "), person_key("ＡＬＩＣＥ")
    ('alice smith', 'alice')
    """
    text = unicodedata.normalize("NFKC", name)
    text = "".join(c for c in text if unicodedata.category(c) not in ("Cf", "Cc") or c.isspace())
    return " ".join(text.casefold().split())


def _active(session: Session, name: str) -> User | None:
    return session.scalars(select(User).where(User.person == person_key(name), User.revoked_ms.is_(None))).first()


def accounts_of(session: Session, person: str) -> list[User]:
    """Every account (revoked or not) of the person `person` (a `person_key`), oldest first."""
    return list(session.scalars(select(User).where(User.person == person).order_by(User.id)))


def add_user(session: Session, audit, *, name: str, role: str, org: str | None = None,
             actor: User | None = None, now_ms: int | None = None, email: str | None = None) -> tuple[User, str]:
    """Create a user and return it with its token (the only time the token exists in clear).

    The caller commits (the user and its ``user.add`` audit entry go in one
    transaction) and then writes an audit checkpoint.

    Raises
    ------
    UserError
        Unknown role; a `requester` without org ``police`` or ``probation``;
        an empty or over-long name or org; a name an active user already has,
        compared as persons (`person_key`: names appear in the audit log, so
        they must say who acted).

    A name that a revoked user had is the same person again: the new account's
    `person` is theirs, and the ``user.add`` audit entry lists the person's
    earlier accounts (``previous_accounts``).
    """
    if not isinstance(name, str) or not person_key(name) or len(name) > _MAX_NAME:
        raise UserError(f"user name must be 1..{_MAX_NAME} characters, at least one of them visible, got {name!r}")
    if role not in ROLES:
        raise UserError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if org is not None and (not org.strip() or len(org) > _MAX_ORG):
        raise UserError(f"org must be 1..{_MAX_ORG} characters, got {org!r}")
    if role == "requester" and org not in EXTERNAL_ORGS:
        raise UserError(f"a requester is an external agency: --org must be one of {', '.join(EXTERNAL_ORGS)}, "
                        f"got {org!r}")
    _check_email(email)
    person = person_key(name)
    earlier = accounts_of(session, person)
    active = [u for u in earlier if u.revoked_ms is None]
    if active:
        same = "" if active[0].name == name else f" (as {active[0].name!r}: names are compared as persons)"
        raise UserError(f"an active user named {name!r} already exists{same}: user {active[0].id}, "
                        f"{active[0].role}; revoke it first")
    now = _now_ms() if now_ms is None else now_ms
    token = secrets.token_urlsafe(32)
    user = User(name=name, person=person, role=role, org=org, email=email, token_sha256=token_digest(token),
                created_ms=now)
    session.add(user)
    session.flush()
    audit.append(session, action="user.add", actor=actor, now_ms=now,
                 detail={"user_id": user.id, "name": name, "role": role, "org": org,
                         "previous_accounts": [u.id for u in earlier]})
    return user, token


def _check_email(email: str | None) -> None:
    if email is not None and not _EMAIL.match(email):
        raise UserError(f"email must be an address such as name@example.gov.uk, not {email[:80]!r}")


def set_email(session: Session, audit, *, user_id: int, email: str | None, actor: User | None = None,
              now_ms: int | None = None) -> User:
    """Give an active account an email address (None: none); urgent records reach a wearer's owner there.
    The caller commits. Audited ``user.email`` (the address itself stays in the users table)."""
    _check_email(email)
    user = session.get(User, user_id)
    if user is None or user.revoked_ms is not None:
        raise UserError(f"no active user with id {user_id}")
    user.email = email
    session.flush()
    audit.append(session, action="user.email", actor=actor, now_ms=_now_ms() if now_ms is None else now_ms,
                 detail={"user_id": user.id, "has_email": email is not None})
    return user


def revoke_user(session: Session, audit, *, name: str | None = None, user_id: int | None = None,
                actor: User | None = None, now_ms: int | None = None) -> User:
    """Revoke the active user with `name` (compared as a person, `person_key`) or id
    `user_id`: their token stops working at once.

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

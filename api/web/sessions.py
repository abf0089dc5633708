"""Console sessions, kept server-side in the database (`ConsoleSession`).

Signing in with an API token (`api.access.users.authenticate`) makes a new
random session id (32 bytes, `secrets.token_urlsafe`); the browser holds it
in an HttpOnly, SameSite=Strict cookie, the database only its SHA-256 (a
copy of the database is no key to a session; no salt is needed for a random
256-bit secret). A session lasts while it is used: a request more than
`Settings.console_idle_s` after the previous one finds it ended, and none
outlives `Settings.console_max_s` from sign-in however busy it is. Signing
out, or the user being revoked, ends it at once. The token itself is never
kept, and a session row is deleted a day after it ended (each sign-in sweeps
them): sign-ins and sign-outs stay in the audit log, which is the record.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, or_
from sqlalchemy.orm import Session

from api.db.models import ConsoleSession, User
from trails.timestamps import DAY_MS

__all__ = ["COOKIE", "SignedIn", "Who", "session_digest", "start_session", "load_session", "end_session",
           "purge_sessions", "KEEP_ENDED_MS"]

#: The session cookie's name.
COOKIE = "tagtrail_session"
_MAX_ID = 100
#: How long an ended session's row is kept (for "your session ended" and for looking into an incident).
KEEP_ENDED_MS = DAY_MS


@dataclass(frozen=True)
class Who:
    """Who is signed in, as the page header shows them: plain values read at sign-in, so an error
    page can still say who you are after the request's transaction was rolled back (which expires
    the ORM `User`)."""

    id: int
    name: str
    role: str


@dataclass(frozen=True)
class SignedIn:
    """A live session: its id (as the cookie holds it) and its user."""

    session_id: str
    user: User

    @property
    def who(self) -> Who:
        return Who(id=self.user.id, name=self.user.name, role=self.user.role)


def session_digest(session_id: str) -> str:
    """Hex SHA-256 of a session id: the database's key for it."""
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def start_session(session: Session, user: User, *, now_ms: int) -> str:
    """A new session for `user`; returns its id (the cookie's value). The caller commits."""
    purge_sessions(session, now_ms=now_ms)
    session_id = secrets.token_urlsafe(32)
    session.add(ConsoleSession(id_sha256=session_digest(session_id), user_id=user.id, created_ms=now_ms,
                               last_seen_ms=now_ms))
    session.flush()
    return session_id


def load_session(session: Session, session_id: str | None, *, now_ms: int, idle_s: int,
                 max_s: int) -> SignedIn | None:
    """The live session `session_id` names, touched (its idle time starts
    again), or None: no such session, signed out, idle too long or older than
    `max_s` (it is ended now), or its user revoked. The caller commits."""
    if not session_id or len(session_id) > _MAX_ID:
        return None
    row = session.get(ConsoleSession, session_digest(session_id))
    if row is None or row.ended_ms is not None:
        return None
    user = session.get(User, row.user_id)
    if (user is None or user.revoked_ms is not None or now_ms - row.last_seen_ms > idle_s * 1000
            or now_ms - row.created_ms > max_s * 1000):
        row.ended_ms = now_ms
        return None
    row.last_seen_ms = now_ms
    return SignedIn(session_id=session_id, user=user)


def end_session(session: Session, session_id: str, *, now_ms: int) -> None:
    """Sign out: the session stops working at once. The caller commits."""
    row = session.get(ConsoleSession, session_digest(session_id))
    if row is not None and row.ended_ms is None:
        row.ended_ms = now_ms


def purge_sessions(session: Session, *, now_ms: int) -> int:
    """Delete the rows of sessions that ended more than `KEEP_ENDED_MS` ago, and of those left
    unused (never signed out) for as long; returns how many. The caller commits."""
    cutoff = now_ms - KEEP_ENDED_MS
    gone = session.execute(delete(ConsoleSession).where(
        or_(ConsoleSession.ended_ms < cutoff, ConsoleSession.last_seen_ms < cutoff)))
    return gone.rowcount or 0

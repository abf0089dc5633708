"""Cross-site request forgery: every console form carries a token, and a POST
without the right one is refused (403) before it does anything.

Signed in, the token is HMAC-SHA256(session id, "tagtrail-console-csrf"): it
needs no storage, differs per session, and cannot be made without the
session id, which only the browser's HttpOnly cookie holds (a page on
another site can neither read the cookie nor the token). The sign-in form,
before any session exists, uses a double-submit token: a random value in
its own HttpOnly, SameSite=Strict cookie and in the form, which must match
(so nobody can sign a victim in to the attacker's account). SameSite=Strict
on both cookies is a second line, not the only one.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["FIELD", "LOGIN_COOKIE", "session_token", "new_login_token", "tokens_match"]

#: The hidden form field every console form carries.
FIELD = "csrf_token"
#: The sign-in form's double-submit cookie.
LOGIN_COOKIE = "tagtrail_login_csrf"
_DOMAIN = b"tagtrail-console-csrf"


def session_token(session_id: str) -> str:
    """The CSRF token of the forms of session `session_id`."""
    return hmac.new(session_id.encode("utf-8"), _DOMAIN, hashlib.sha256).hexdigest()


def new_login_token() -> str:
    """A fresh token for the sign-in form (and its cookie)."""
    return secrets.token_urlsafe(32)


def tokens_match(expected: str | None, given: str | None) -> bool:
    """Both present and equal (compared in constant time)."""
    if not expected or not given or len(given) > 200:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))

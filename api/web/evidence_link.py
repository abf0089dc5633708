"""Short-lived links from a breach page to its map and timeline data.

The breach page (`api.web.pages.breach`) reads a record's evidence, audits
that consultation once (``breach.evidence``, with ``fixes_sha256``: a digest
of exactly the fixes shown) and puts a link to ``/breaches/{id}/evidence.json``
in the page instead of a week of fixes. The link carries a token that ties it
to that one consultation: HMAC-SHA256, keyed by the console session id (which
only the browser's HttpOnly cookie holds, as the CSRF token is), over the
record, the window shown, the fixes' digest and an expiry a few minutes ahead.
Nobody can make one without having had the page; another session, another
record, another window, or later data cannot use it.
"""
from __future__ import annotations

import hashlib
import hmac

import numpy as np

__all__ = ["LINK_TTL_S", "check_token", "fixes_digest", "make_token"]

#: How long after the page was shown its data link still works (the browser fetches it at once).
LINK_TTL_S = 300
_DOMAIN = b"tagtrail-breach-evidence-link"


def fixes_digest(*columns: np.ndarray) -> str:
    """Hex SHA-256 of the fixes' columns (their bytes, in order): which fixes, exactly."""
    h = hashlib.sha256()
    for c in columns:
        a = np.ascontiguousarray(c)
        h.update(str(a.dtype).encode("ascii") + len(a).to_bytes(8, "little") + a.tobytes())
    return h.hexdigest()


def _mac(session_id: str, payload: str) -> str:
    return hmac.new(session_id.encode("utf-8"), _DOMAIN + b"\0" + payload.encode("utf-8"), hashlib.sha256).hexdigest()


def make_token(session_id: str, breach_id: str, window: tuple[int, int], digest: str, *, now_ms: int) -> str:
    """The token for the page just audited: ``expires.mac`` (the rest is re-derived by the data route)."""
    expires = now_ms + LINK_TTL_S * 1000
    return f"{expires}.{_mac(session_id, f'{breach_id}|{window[0]}|{window[1]}|{digest}|{expires}')}"


def check_token(token: str, session_id: str, breach_id: str, window: tuple[int, int], digest: str, *,
                now_ms: int) -> str | None:
    """None when `token` was made by this session for this record, window and fixes and has not expired;
    otherwise why not (for the 410/403 answer)."""
    expires, _, mac = token.partition(".")
    if not expires.isdigit() or len(expires) > 16 or len(mac) != 64:
        return "not a data link"
    if now_ms >= int(expires):
        return "the link has expired: reload the record's page"
    want = _mac(session_id, f"{breach_id}|{window[0]}|{window[1]}|{digest}|{expires}")
    if not hmac.compare_digest(want, mac):
        return "the link is not for this session, this record or these fixes: reload the record's page"
    return None

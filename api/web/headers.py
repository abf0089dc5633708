"""Security headers on every response the app sends (console pages, static
files, the API): a Content-Security-Policy that allows scripts, styles and
everything else only from this origin (no inline script, no remote origin;
images may also come from the deployment's own tile server,
`Settings.tile_origin`), ``X-Frame-Options: DENY``, ``Referrer-Policy:
no-referrer`` and ``X-Content-Type-Options: nosniff``.

One exception: `/docs` (vendored Swagger UI) sets inline styles and uses
``data:`` images, so its policy allows inline styles (never inline script).
"""
from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SecurityHeaders", "content_security_policy"]


def content_security_policy(tile_origin: str | None, *, inline_styles: bool = False) -> str:
    """The policy: self only; `tile_origin` is added to img-src when given."""
    img = " ".join(x for x in ("'self'", "data:", tile_origin) if x)
    style = "'self' 'unsafe-inline'" if inline_styles else "'self'"
    return ("default-src 'self'; script-src 'self'; " f"style-src {style}; img-src {img}; font-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


class SecurityHeaders:
    """ASGI middleware adding the headers to every HTTP response."""

    def __init__(self, app: ASGIApp, *, tile_origin: str | None) -> None:
        self.app = app
        strict = content_security_policy(tile_origin)
        docs = content_security_policy(tile_origin, inline_styles=True)
        common = [(b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer"),
                  (b"x-content-type-options", b"nosniff")]
        self._strict = [(b"content-security-policy", strict.encode("ascii")), *common]
        self._docs = [(b"content-security-policy", docs.encode("ascii")), *common]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self._docs if scope.get("path") == "/docs" else self._strict

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in extra if h[0] not in names)]
            await send(message)

        await self.app(scope, receive, with_headers)

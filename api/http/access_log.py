"""The server's access log, without personal data.

Uvicorn's own access log prints each request's path, and paths carry
subject ids (``/v1/subjects/S-000123/breaches``) and request ids; a server
log is read by more people, and kept longer, than the audit log's
pseudonyms allow. `tagtrail serve` turns it off and this middleware logs,
per request, the method, the route's *template*
(``/v1/subjects/{subject_id}/breaches``), the status and the duration:
what an operator needs, and nothing about whom a request concerned.
"""
from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["AccessLog", "route_template"]

log = logging.getLogger("tagtrail.access")


class AccessLog:
    """ASGI middleware: one INFO line per HTTP request on the ``tagtrail.access`` logger."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            log.info("%s %s %d %.0f ms", scope.get("method", "?"), route_template(scope), status,
                     (time.perf_counter() - began) * 1000)


def route_template(scope: Scope) -> str:
    """The request's path with each path parameter's segment replaced by ``{name}``
    (``/v1/subjects/S-1/breaches`` -> ``/v1/subjects/{subject_id}/breaches``);
    ``(no route)`` when no route matched (the raw path may hold anything)."""
    if scope.get("route") is None:
        return "(no route)"
    params = {str(v): k for k, v in (scope.get("path_params") or {}).items()}
    return "/".join(f"{{{params[seg]}}}" if seg in params else seg for seg in scope.get("path", "").split("/"))

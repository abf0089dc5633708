"""The trail access service (issue 4): `create_app(settings)` builds a FastAPI
app; nothing is built at import time.

State on ``app.state``: settings, engine, session_factory, audit (an
`api.audit.log.AuditLog`) and clock (epoch-ms now; tests may replace it). One
router per resource under ``/v1``; every one of them checks roles through
`api.http.deps.authorize` and the table in `api.access.permissions`.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.db.session import open_database
from api.http.errors import install_handlers
from api.http.schemas import ErrorBody
from api.settings import Settings

__all__ = ["create_app", "ERROR_RESPONSES", "DESCRIPTION"]

DESCRIPTION = """\
Governed access to electronic-monitoring trails.

Authenticate with `Authorization: Bearer TOKEN`. Roles: caseworker and
requester (police, probation) ask for data; an approver, never the requester,
decides; the requester downloads the approved period until the approval
expires; auditors and admins read reports and the audit log. Every call,
including every read, is recorded in a tamper-evident audit log.

**Errors** have one shape, whatever the status (schema `ErrorBody`):
`{"detail": "...", "errors": [{"loc": [...], "msg": "...", "type": "..."}]}`.
`detail` is always there: one line saying what went wrong, naming the value
or field. `errors` is there only when the request failed validation (422):
one item per field at fault. A query parameter an operation does not take is
a validation error too (422, `type` `extra_forbidden`), never ignored.
Statuses: 401 no valid token; 403 the role may not call the operation (an
external requester gets one generic refusal with a reference); 404 unknown
record or path; 405 method; 409 the record's state does not allow it; 410
expired; 413 body too large; 414 query string too long; 415 media type; 422
validation; 503 the audit log failed an integrity check; 507 storage full;
500 anything unexpected (no details; the server log has them).
"""

#: Documented on every operation: any 4xx or 5xx answer has the `ErrorBody` shape (api.http.errors).
ERROR_RESPONSES: dict[int | str, dict] = {
    "4XX": {"model": ErrorBody, "description": "refused or invalid (422: validation, with `errors`)"},
    "5XX": {"model": ErrorBody, "description": "the service could not do it (503, 507, 500)"},
}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _sign_at_shutdown(app: FastAPI) -> None:
    """A clean shutdown leaves every entry under a signed checkpoint (the cadence may not have come round)."""
    import logging

    with app.state.session_factory() as session:
        try:
            app.state.audit.write_checkpoint(session, force=True)
            session.commit()
        except Exception as exc:  # a recorded integrity failure, a full disk: say so, and stop anyway
            session.rollback()
            logging.getLogger("tagtrail.api").warning("no checkpoint at shutdown: %s", exc)


def create_app(settings: Settings, *, clock: Callable[[], int] | None = None) -> FastAPI:
    """Build the app for `settings`: open (and migrate) the database, attach
    the audit log and the streaming detector, register routers and exception
    handlers. The detector's background thread runs while the app is served
    (lifespan); without it (tests), ``app.state.stream.run_pending()`` does a pass."""
    from api.http.access_log import AccessLog
    from api.audit.log import AuditLog
    from api.http.guard import FailedAuthCounter, record_failed_auth
    from api.http.routers import (access_requests, admin, audit, breaches, devices, escalation, health, intake,
                                  mitigations, notifications, reports, reviews, subjects, trends, users,
                                  legal_holds, wearer_details)
    from api.service.stream import StreamService
    from api.web.console import install_console
    from api.web.docs import install_docs

    engine, factory = open_database(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        _app.state.stream.start()
        _app.state.stream.notify()  # catch up with anything received before a restart
        watcher = getattr(_app.state, "watcher", None)
        if watcher is not None:
            watcher.start()
        yield
        if watcher is not None:
            watcher.stop()
        _app.state.stream.stop()
        counts = _app.state.failed_auth.flush()
        if counts:
            record_failed_auth(_app, counts)
        _sign_at_shutdown(_app)
        engine.dispose()

    # bodies are bounded by api.http.guard; the docs are served from the package (no CDN); the ReDoc
    # page, which would need a CDN, is off
    app = FastAPI(title="tagtrail trail access service", version="1", description=DESCRIPTION,
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = factory
    app.state.audit = AuditLog(settings)
    app.state.clock = clock or _now_ms
    app.state.stream = StreamService(settings, factory, app.state.audit, clock=app.state.clock)
    app.state.failed_auth = FailedAuthCounter()
    install_handlers(app)
    install_docs(app)
    install_console(app)
    app.add_middleware(AccessLog)
    app.include_router(health.router, responses=ERROR_RESPONSES)
    for module in (access_requests, subjects, reports, audit, intake, breaches, admin, users, mitigations, escalation,
                   reviews, wearer_details, devices, notifications, legal_holds, trends):
        app.include_router(module.router, prefix="/v1", responses=ERROR_RESPONSES)
    return app


"""Mount the Hub console on the API's FastAPI app (`install_console`, called by
`api.http.app.create_app`): the Jinja2 environment, the page routers, the
answers to a signed-out visitor (a redirect to /login with the way back) and
to a refusal (the error page with its status), and the security headers on
every response (`api.web.headers`).

Pages: `api.web.pages.login` (/login, /logout, /), `api.web.pages.queue`
(/queue), `api.web.pages.subject` (/subjects/{id}), and the others under api/web/pages. Authorisation is the API's (`api.web.auth.require` over
`api.access.permissions`); audit entries are the API's, with channel console.
"""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from api.service.boundaries import BoundaryIndex
from api.web.auth import ConsoleRefused, SignInRequired, sign_in_redirect
from api.web.headers import SecurityHeaders
from api.web.templating import make_environment, render

__all__ = ["install_console"]


def install_console(app: FastAPI) -> None:
    """Add the console's pages, error answers and security headers to `app`
    (whose state already holds settings, session_factory, audit and clock)."""
    from api.web import tiles
    from api.web.pages import admin, audit, boundaries, breach, login, queue, reports, subject
    from api.web.pages import approvals, request_page, requests  # access requests
    from api.web.pages import casework, casework_forms, devices, notifications, wearer_casework  # casework

    app.state.console_templates = make_environment()
    app.state.boundaries = BoundaryIndex(app.state.settings.home)  # map context, read again when the admin loads more
    app.include_router(login.router)
    app.include_router(queue.router)
    for pages in (requests, request_page, approvals):  # /requests/new before /requests/{id}
        app.include_router(pages.router)
    app.include_router(audit.router)
    app.include_router(reports.router)
    app.include_router(admin.router)
    app.include_router(breach.router)
    app.include_router(subject.router)
    for pages in (casework, wearer_casework, casework_forms, devices, notifications):
        app.include_router(pages.router)
    app.include_router(tiles.router)  # the MBTiles background (TAGTRAIL_TILE_FILE)
    app.include_router(boundaries.router)  # the context boundaries (/console/boundaries.json, the admin's upload)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        target = sign_in_redirect(exc.next_path)
        if request.headers.get("hx-request") == "true":  # htmx follows this header with a full page load
            return Response(status_code=204, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(ConsoleRefused)
    async def _refused(request: Request, exc: ConsoleRefused) -> Response:
        return render(request, "error.html", {"title": exc.title, "message": exc.message},
                      status_code=exc.status)

    app.add_middleware(SecurityHeaders, tile_origin=app.state.settings.tile_origin)

"""The console's Jinja2 environment: templates from api/web/templates,
autoescaped, with the filters pages use (London times, durations) and the
navigation each role sees. `render` is the one way a page is answered."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from api.access.permissions import is_allowed
from api.web.csrf import FIELD
from api.service.london import duration_text
from api.service.record_words import zone_kind_text
from api.web.london import time_element
from api.web.tiles import map_tiles

__all__ = ["TEMPLATES_DIR", "NAV", "make_environment", "render", "nav_for"]

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

#: The service navigation: (label, path, the operation that page needs). A role sees an item
#: when `api.access.permissions.is_allowed` lets it call that operation.
NAV: tuple[tuple[str, str, str], ...] = (
    ("Queue", "/queue", "breach_queue"),
    ("Casework", "/casework", "reviews_due"),
    ("Devices", "/devices", "list_devices"),
    ("Requests", "/requests", "list_access_requests"),
    ("Approvals", "/approvals", "decide_access_request"),
    ("Reports", "/reports", "report_breaches"),
    ("Audit", "/audit", "audit_checkpoint"),
    ("Admin", "/admin", "list_users"),
)


def make_environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["london"] = time_element
    env.filters["duration"] = duration_text
    env.filters["zone_kind"] = zone_kind_text
    env.globals["csrf_field"] = FIELD
    env.globals["may"] = is_allowed  # may(op, role): whether to offer a link to a page that needs API operation op
    return env


def nav_for(request: Request, role: str | None) -> list[dict[str, Any]]:
    """The navigation items `role` sees, the current one marked."""
    if role is None:
        return []
    here = request.url.path
    return [{"label": label, "href": href, "current": here == href or here.startswith(href + "/")}
            for label, href, op in NAV if is_allowed(op, role)]


def render(request: Request, template: str, context: dict[str, Any], *, status_code: int = 200,
           headers: dict[str, str] | None = None) -> HTMLResponse:
    """Render `template` with `context` plus what every page needs: the
    signed-in user (``me``, or None), their navigation and CSRF token, and ``map_tiles``, the maps'
    data-tiles (`api.web.tiles.map_tiles`: the tile server, this app's MBTiles route, or "")."""
    env: Environment = request.app.state.console_templates
    who = getattr(request.state, "console_who", None)
    base = {"request": request, "me": who, "nav": nav_for(request, who.role if who else None),
            "csrf_token": getattr(request.state, "csrf_token", ""),
            "map_tiles": map_tiles(request.app.state.settings)}
    html = env.get_template(template).render({**base, **context})
    return HTMLResponse(html, status_code=status_code, headers=headers)

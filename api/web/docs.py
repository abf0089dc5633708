"""`/docs`: Swagger UI from the package's vendored copy, so the interactive API
documentation works on a network with no internet (FastAPI's default page
loads it from a CDN). The page has no inline script: `docs-init.js` starts it."""
from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["STATIC_DIR", "install_docs"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
_SWAGGER = "/static/vendor/swagger-ui-dist"


def _page(title: str, openapi_url: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{escape(title)} - API docs</title>
<link rel="icon" type="image/png" href="{_SWAGGER}/favicon-32x32.png">
<link rel="stylesheet" href="{_SWAGGER}/swagger-ui.css">
</head>
<body data-openapi-url="{escape(openapi_url)}">
<div id="swagger-ui"></div>
<script src="{_SWAGGER}/swagger-ui-bundle.js"></script>
<script src="/static/docs-init.js"></script>
</body>
</html>
"""


def install_docs(app: FastAPI) -> None:
    """Serve /static (the package's files) and /docs (Swagger UI) on `app`; the
    app must be built with ``docs_url=None, redoc_url=None``."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    router = APIRouter(include_in_schema=False)

    @router.get("/docs", response_class=HTMLResponse)
    def docs() -> HTMLResponse:
        return HTMLResponse(_page(app.title, app.openapi_url or "/openapi.json"))

    app.include_router(router)

"""Errors the HTTP API raises on purpose, and the handlers that turn every
error into JSON.

Domain code raises an `ApiError` subclass with a message that names the
values; `install_handlers` maps it to its status code and
``{"detail": "..."}``. Validation errors become 422 with one message per
field; anything unexpected becomes a generic 500 with no stack trace (and is
logged on the server), though tests show bad input never gets that far.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["ApiError", "Unauthorized", "Forbidden", "NotFound", "Conflict", "Gone", "Unprocessable",
           "BadRequest", "install_handlers", "INTERNAL_ERROR"]

log = logging.getLogger("tagtrail.api")

#: The only thing a client learns about an unexpected failure.
INTERNAL_ERROR = "internal error: the request was not completed; the server log has the details"


class ApiError(Exception):
    """Base of the API's domain errors: a status code and a message for the client."""

    status_code: int = 400
    headers: dict[str, str] | None = None

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class BadRequest(ApiError):
    status_code = 400


class Unauthorized(ApiError):
    status_code = 401
    headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(ApiError):
    status_code = 403


class NotFound(ApiError):
    status_code = 404


class Conflict(ApiError):
    """The request is well-formed but the resource's state does not allow it."""

    status_code = 409


class Gone(ApiError):
    """It was there, and is no longer (an expired approval)."""

    status_code = 410


class Unprocessable(ApiError):
    """Well-formed input that fails a rule needing the database (e.g. a period
    outside the wearer's monitoring)."""

    status_code = 422


def _validation_errors(exc: RequestValidationError) -> list[dict]:
    """Pydantic's errors reduced to loc/msg/type: never the raw input (which
    may be large or personal) nor `ctx` (which may hold exception objects)."""
    out = []
    for err in exc.errors():
        loc = [p if isinstance(p, (str, int)) else str(p) for p in err.get("loc", ())]
        out.append({"loc": loc, "msg": str(err.get("msg", "invalid")), "type": str(err.get("type", "value_error"))})
    return out


def install_handlers(app: FastAPI) -> None:
    """Register the exception handlers on `app`."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_errors(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:  # pragma: no cover - never in tests
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": INTERNAL_ERROR}, status_code=500)

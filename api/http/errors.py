"""Errors the HTTP API raises on purpose, and the handlers that turn every
error into the API's one error shape.

Every error response, whatever produced it (an `ApiError` from domain code,
request validation, an HTTPException, the guard's refusals, routing's 404 and
405, 413/414, 503, 507, the catch-all 500), is a JSON object built by
`error_body`:

- ``detail`` (always): one string saying what went wrong, naming the offending
  value or field;
- ``errors`` (only when the request failed validation, 422): one
  ``{"loc": [...], "msg": "...", "type": "..."}`` per field at fault, never
  the raw input.

Clients read ``detail`` alone to report any error and ``errors`` to point at
fields. Validation failures are 422 everywhere (never 400). Anything
unexpected becomes a generic 500 with no stack trace (logged on the server),
though tests show bad input never gets that far.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["ApiError", "Unauthorized", "Forbidden", "NotFound", "Conflict", "Gone", "Unprocessable",
           "BadRequest", "PayloadTooLarge", "UriTooLong", "UnsupportedMediaType", "ServiceUnavailable",
           "install_handlers", "is_storage_full", "error_body", "validation_summary", "INTERNAL_ERROR",
           "STORAGE_FULL"]

log = logging.getLogger("tagtrail.api")

#: The only thing a client learns about an unexpected failure.
INTERNAL_ERROR = "internal error: the request was not completed; the server log has the details"
#: What every call gets while the disk is full. Reads too: each read is recorded in the audit
#: log before anything is released, and a read that cannot be recorded is not served.
STORAGE_FULL = ("the server's storage is full: nothing was changed or released (every call, reads included, "
                "is recorded in the audit log first); an operator must free space")


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


class PayloadTooLarge(HTTPException):
    """413; an HTTPException so that FastAPI passes it through when it is raised while
    the body is being read (anything else raised there becomes a generic 400)."""

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=413, detail=detail)


class UriTooLong(ApiError):
    status_code = 414


class UnsupportedMediaType(ApiError):
    status_code = 415


class ServiceUnavailable(ApiError):
    """The service refuses work it could not do safely (the audit log failed a check)."""

    status_code = 503


def is_storage_full(exc: BaseException) -> bool:
    """True when `exc` (or what caused it) is the disk or the database being full:
    ENOSPC/EDQUOT from the OS, SQLITE_FULL, PostgreSQL's disk_full (53100)."""
    import errno

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc).lower()
        if "database or disk is full" in text or getattr(exc, "sqlstate", None) == "53100" \
                or getattr(getattr(exc, "orig", None), "sqlstate", None) == "53100":
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
    return False


def error_body(detail: str, errors: list[dict] | None = None) -> dict:
    """The API's one error shape (module docstring): ``{"detail": str}``, plus
    ``"errors"`` when there are per-field validation errors. Every handler
    builds its response here, so the shape has one implementation."""
    body: dict = {"detail": detail}
    if errors:
        body["errors"] = errors
    return body


def _validation_errors(exc: RequestValidationError) -> list[dict]:
    """Pydantic's errors reduced to loc/msg/type: never the raw input (which
    may be large or personal) nor `ctx` (which may hold exception objects)."""
    out = []
    for err in exc.errors():
        loc = [p if isinstance(p, (str, int)) else str(p) for p in err.get("loc", ())]
        out.append({"loc": loc, "msg": str(err.get("msg", "invalid")), "type": str(err.get("type", "value_error"))})
    return out


def _where(loc: list) -> str:
    """["body", "fixes", 0, "ts"] -> "body.fixes[0].ts"."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "request"


#: Field errors spelled out in a validation error's `detail`; the rest are counted (all are in `errors`).
_SUMMARISED = 3


def validation_summary(errors: list[dict]) -> str:
    """One line for a 422's `detail`: each field at fault and what is wrong with it
    (the first `_SUMMARISED`, then how many more are listed in `errors`)."""
    parts = [f"{_where(e['loc'])}: {e['msg']}" for e in errors[:_SUMMARISED]]
    more = len(errors) - len(parts)
    tail = f"; and {more} more (see errors)" if more > 0 else ""
    return "invalid request: " + ("; ".join(parts) or "failed validation") + tail


#: Longest request path echoed back in a routing 404/405 message.
_PATH_SHOWN = 200


def _routing_detail(request: Request, exc: StarletteHTTPException) -> str:
    """Routing's own 404/405 (Starlette's bare "Not Found" / "Method Not Allowed")
    say which path and method, and what the path does allow."""
    path = request.url.path
    path = path if len(path) <= _PATH_SHOWN else path[:_PATH_SHOWN] + "..."
    if exc.status_code == 404 and exc.detail == "Not Found":
        return f"no endpoint at {path}: see /docs for the API's paths"
    if exc.status_code == 405 and exc.detail == "Method Not Allowed":
        allowed = (exc.headers or {}).get("Allow") or "none"
        return f"method {request.method} is not allowed on {path}: allowed methods are {allowed}"
    return exc.detail if isinstance(exc.detail, str) else str(exc.detail)


def install_handlers(app: FastAPI) -> None:
    """Register the exception handlers on `app`; each answers with `error_body`."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.detail), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        return JSONResponse(error_body(validation_summary(errors), errors), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(error_body(_routing_detail(request, exc)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    async def _storage(request: Request, exc: Exception) -> JSONResponse:
        if not is_storage_full(exc):
            raise exc  # not ours: the catch-all below logs it and answers 500
        log.error("storage full on %s %s: %s", request.method, request.scope.get("route").path
                  if request.scope.get("route") else "?", exc)
        return JSONResponse(error_body(STORAGE_FULL), status_code=507)

    from sqlalchemy.exc import OperationalError

    app.add_exception_handler(OSError, _storage)
    app.add_exception_handler(OperationalError, _storage)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body(INTERNAL_ERROR), status_code=500)

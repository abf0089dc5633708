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
from starlette.exceptions import HTTPException
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["ApiError", "Unauthorized", "Forbidden", "NotFound", "Conflict", "Gone", "Unprocessable",
           "BadRequest", "PayloadTooLarge", "UriTooLong", "UnsupportedMediaType", "ServiceUnavailable",
           "install_handlers", "is_storage_full", "INTERNAL_ERROR", "STORAGE_FULL"]

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

    async def _storage(request: Request, exc: Exception) -> JSONResponse:
        if not is_storage_full(exc):
            raise exc  # not ours: the catch-all below logs it and answers 500
        log.error("storage full on %s %s: %s", request.method, request.scope.get("route").path
                  if request.scope.get("route") else "?", exc)
        return JSONResponse({"detail": STORAGE_FULL}, status_code=507)

    from sqlalchemy.exc import OperationalError

    app.add_exception_handler(OSError, _storage)
    app.add_exception_handler(OperationalError, _storage)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:  # pragma: no cover - never in tests
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": INTERNAL_ERROR}, status_code=500)

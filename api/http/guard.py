"""The gate every `/v1` call passes before its body is read: size, identity,
role, the audit log's health; and what a refused or failed call leaves behind.

FastAPI reads and parses a request body before it resolves any dependency,
so a token check written as a dependency comes too late: an anonymous 50 MB
body would already be in memory, parsed on the event loop. `GuardedRoute`
(every router's ``route_class``) runs first instead:

1. a query string over `MAX_QUERY_BYTES` is 414, a ``Content-Length`` over
   the operation's limit (`body_limit`) is 413, and a body without one is
   counted as it arrives and cut off at the limit (413). (Starlette's own
   body limit answers in plain text, not the API's JSON error shape.)
2. the bearer token is looked up (in a worker thread, on a read-only
   session): 401 without a valid one;
3. while the audit log is in a failed state (tampering detected) every
   operation but those that help investigate it is 503;
4. the caller's role must be allowed for the route's operation id
   (`api.access.permissions.PERMISSIONS`): 403 otherwise;
5. a query parameter the operation does not declare is a 422 naming it and
   the ones it takes (a filter that is not supported is never silently
   ignored: `declared_query`);
6. only then is the body read, and JSON is parsed in a worker thread, never
   on the event loop (`_ThreadParsedRequest`).

Refusals and failures of operations on personal data are audited (DPA 2018
s.62: the log shows who tried what, and why it was refused): one entry per
authenticated attempt (actor, operation, target, reason). Attempts with no
valid token have no actor; they are counted and written as one summary
entry a minute at most (`FailedAuthCounter`), so an anonymous flood cannot
fill the append-only log. External requesters never learn why a call on a
wearer failed (that would let them find out who is monitored, and since
when): they get one generic refusal carrying the audit reference that the
Hub can look up (`_masked` says which errors).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from api.http.errors import ApiError, Forbidden, PayloadTooLarge, ServiceUnavailable, Unauthorized, UriTooLong
from api.access.permissions import PERMISSIONS, PERSONAL_DATA_OPS, WHILE_AUDIT_FAILED
from api.audit.refusals import REFUSED, masked_for_requester

__all__ = ["GuardedRoute", "FailedAuthCounter", "JSON_BODY_LIMIT", "INTAKE_BODY_LIMIT", "MAX_QUERY_BYTES", "REFUSED",
           "body_limit", "declared_query"]

log = logging.getLogger("tagtrail.api")

#: Largest JSON body of any route but intake (a request, a decision, a zone: a few KB in practice).
JSON_BODY_LIMIT = 256 << 10
#: Largest intake batch body (50,000 rows of CSV or JSON fit comfortably).
INTAKE_BODY_LIMIT = 32 << 20
_BODY_LIMITS = {"post_fixes": INTAKE_BODY_LIMIT}
#: Longest query string: filters and paging fit in a few hundred bytes.
MAX_QUERY_BYTES = 2048
_TOKEN_MAX = 512


class BodyRejected(HTTPException):
    """A body that cannot be parsed safely (FastAPI re-raises HTTPExceptions from body reading)."""

    def __init__(self, detail: str) -> None:
        super().__init__(status_code=422, detail=detail)


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except RecursionError:
        raise BodyRejected("body is nested too deeply to be a request (JSON arrays or objects inside each other "
                           "hundreds of levels deep)") from None
    except UnicodeDecodeError as exc:  # FastAPI would answer a bare 400; it is invalid input like any other
        raise BodyRejected(f"body is not JSON text in UTF-8, UTF-16 or UTF-32: byte {exc.start} cannot be "
                           f"decoded") from None


def body_limit(operation_id: str) -> int:
    """Largest body, in bytes, that `operation_id` accepts."""
    return _BODY_LIMITS.get(operation_id, JSON_BODY_LIMIT)


def declared_query(dependant: Dependant) -> frozenset[str]:
    """The query parameter names a route takes: its own and its dependencies',
    as a client spells them (the alias: ``from``, not ``from_``). Read from
    FastAPI's `Dependant` tree, the same one it validates requests with."""
    names: set[str] = set()
    todo = [dependant]
    while todo:
        d = todo.pop()
        names.update(getattr(f, "validation_alias", None) or f.alias for f in d.query_params)
        todo.extend(d.dependencies)
    return frozenset(names)


def _check_query(request: Request, op: str, allowed: frozenset[str]) -> None:
    """422 for a query parameter `op` does not take, naming it and those it does."""
    unknown = sorted({k for k in request.query_params.keys() if k not in allowed})
    if unknown:
        takes = ", ".join(sorted(allowed)) or "none"
        raise RequestValidationError([
            {"loc": ("query", k), "type": "extra_forbidden",
             "msg": f"{op} takes no query parameter {k[:100]!r} (it takes: {takes})"} for k in unknown[:20]])


def _counted(receive, limit: int):
    """`receive` that refuses (413) once more than `limit` body bytes have arrived."""
    seen = 0

    async def counted():
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise PayloadTooLarge(f"body over {limit} bytes; at most {limit} bytes for this operation")
        return message

    return counted


class _ThreadParsedRequest(Request):
    """A request whose JSON body is parsed in a worker thread: a large or
    pathological body never stalls the event loop, and nesting deep enough to
    exhaust the parser's recursion is a 422, not a 500."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            self._json = await run_in_threadpool(_parse_json, body)
        return self._json


def _bearer_token(request: Request) -> str:
    header = request.headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer TOKEN'")
    if len(token) > _TOKEN_MAX:
        raise Unauthorized("invalid or revoked token")
    return token


def _lookup(app, token: str):
    """The token's user (revoked or not), read on a read-only session (no write lock)."""
    from api.db.session import read_only_factory
    from api.access.users import authenticate

    reader = getattr(app.state, "reader_factory", None)
    if reader is None:
        reader = app.state.reader_factory = read_only_factory(app.state.session_factory)
    with reader() as session:
        user = authenticate(session, token)
        session.commit()
    return user


def _target(request: Request) -> dict:
    """What a call was about, from its path, query and (parsed) body; the
    subject id goes to the audit log only as its pseudonym."""
    out = {k: v for k, v in request.path_params.items() if k != "subject_id"}
    body = getattr(request, "_json", None)
    subject = (request.path_params.get("subject_id") or request.query_params.get("subject_id")
               or (body.get("subject_id") if isinstance(body, dict) else None))
    return {"params": out, "subject_id": subject if isinstance(subject, str) and subject else None}


def _reason(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, RequestValidationError):
        return 422, "request failed validation"
    status = getattr(exc, "status_code", 500)
    detail = getattr(exc, "detail", None)
    return int(status), detail if isinstance(detail, str) else type(exc).__name__


class FailedAuthCounter:
    """Attempts on personal data with no valid token, per operation, written to
    the audit log as one ``auth.failed`` entry a minute at most."""

    def __init__(self, interval_s: float = 60.0) -> None:
        self.interval_s = interval_s
        self._counts: dict[str, int] = {}
        self._since = time.monotonic()
        self._lock = threading.Lock()

    def add(self, operation: str) -> dict[str, int] | None:
        """Count one attempt; returns the counts to write when a summary is due."""
        with self._lock:
            self._counts[operation] = self._counts.get(operation, 0) + 1
            return self._take(force=False)

    def _take(self, *, force: bool) -> dict[str, int] | None:
        if not self._counts or (not force and time.monotonic() - self._since < self.interval_s):
            return None
        counts, self._counts, self._since = self._counts, {}, time.monotonic()
        return counts

    def flush(self) -> dict[str, int] | None:
        with self._lock:
            return self._take(force=True)


def record_refusal(app, *, user, operation: str, target: dict, status: int, reason: str,
                   channel: str = "api") -> int | None:
    """Append one ``access.refused`` entry (its own transaction); returns its index."""
    from api.audit.refusals import record_refusal as record

    return record(app.state.audit.via(channel), app.state.session_factory, user=user, operation=operation,
                  target=target, status=status, reason=reason, now_ms=app.state.clock())


def record_failed_auth(app, counts: dict[str, int]) -> None:
    """One ``auth.failed`` summary entry (`api.audit.refusals.record_failed_auth`)."""
    from api.audit.refusals import record_failed_auth as record

    record(app.state.audit, app.state.session_factory, counts, now_ms=app.state.clock())


class GuardedRoute(APIRoute):
    """An API route that checks size, identity, the audit log's state and the
    role before the body is read, and audits what it refuses (module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        inner = super().get_route_handler()
        op = self.operation_id or ""
        limit = body_limit(op)
        personal = op in PERSONAL_DATA_OPS
        query_names = declared_query(self.dependant)

        async def guarded(request: Request) -> Response:
            _check_size(request, limit)
            user = await _identify(request, op, personal)
            _check_audit_state(request, op)
            if user.role not in PERMISSIONS.get(op, frozenset()):
                error = Forbidden(f"role {user.role!r} may not call {op}: allowed roles are "
                                  f"{', '.join(sorted(PERMISSIONS.get(op, ())))}")
                if personal:
                    await _refused(request, user, op, error)
                raise error
            request.scope.setdefault("state", {})["tagtrail_user_id"] = user.id
            parsed = _ThreadParsedRequest(request.scope, _counted(request.receive, limit))
            try:
                _check_query(request, op, query_names)
                return await inner(parsed)
            except (ApiError, RequestValidationError, HTTPException) as exc:
                if personal:
                    session = request.scope["state"].pop("tagtrail_session", None)
                    if session is not None:  # the failed call's transaction ends here, not after the response
                        await run_in_threadpool(session.rollback)
                    ref = await _refused(parsed, user, op, exc)
                    if _masked(user, op, exc):
                        raise Forbidden(REFUSED.format(ref=f"A-{ref}" if ref is not None else "(not recorded)"))
                raise

        return guarded


def _masked(user, op: str, exc: Exception) -> bool:
    """Does an external requester get the generic refusal instead of this error?
    (`api.audit.refusals.masked_for_requester`: the console asks the same.)"""
    return isinstance(exc, ApiError) and masked_for_requester(user.role, op, exc.status_code)


def _check_size(request: Request, limit: int) -> None:
    query = request.scope.get("query_string") or b""
    if len(query) > MAX_QUERY_BYTES:
        raise UriTooLong(f"query string of {len(query)} bytes; at most {MAX_QUERY_BYTES}")
    length = request.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"body of {int(length)} bytes; at most {limit} bytes for this operation")


async def _identify(request: Request, op: str, personal: bool):
    app = request.app
    try:
        token = _bearer_token(request)
        user = await run_in_threadpool(_lookup, app, token)
        if user is None:
            raise Unauthorized("invalid or revoked token")
        if user.revoked_ms is not None:
            if personal:  # a known person whose access was withdrawn: audited by name
                await _refused(request, user, op, Unauthorized("revoked token"))
            raise Unauthorized("invalid or revoked token")
    except Unauthorized:
        if personal:
            counts = app.state.failed_auth.add(op)
            if counts:
                await run_in_threadpool(record_failed_auth, app, counts)
        raise
    return user


def _check_audit_state(request: Request, op: str) -> None:
    problem = request.app.state.audit.integrity_problem()
    if problem and op not in WHILE_AUDIT_FAILED:
        raise ServiceUnavailable(f"the audit log failed an integrity check ({problem}); nothing is released or "
                                 f"changed until an operator acts (see `tagtrail audit verify` and "
                                 f"`tagtrail audit resume --help`)")


async def _refused(request: Request, user, op: str, exc: Exception) -> int | None:
    status, reason = _reason(exc)
    return await run_in_threadpool(record_refusal, request.app, user=user, operation=op, target=_target(request),
                                   status=status, reason=reason)

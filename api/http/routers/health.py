"""`GET /healthz`: liveness and the audit log's state; no authentication, no
database, not audited (it holds no personal data)."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.http.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="healthz", response_model=Health,
            responses={503: {"model": Health, "description": "the audit log failed an integrity check"}})
def healthz(request: Request):
    """The service is up (200), or up but refusing to release or change data
    because the audit log failed an integrity check (503, with the problem).

    Roles: none (no token needed)."""
    problem = request.app.state.audit.integrity_problem()
    if problem is None:
        return Health(status="ok", audit="ok")
    return JSONResponse(Health(status="audit_failed", audit=problem).model_dump(), status_code=503)

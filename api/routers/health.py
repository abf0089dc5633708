"""`GET /healthz`: liveness, no authentication, no database, not audited."""
from __future__ import annotations

from fastapi import APIRouter

from ..schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="healthz", response_model=Health)
def healthz() -> Health:
    """The service is up. Roles: none (no token needed)."""
    return Health(status="ok")

"""Liveness and readiness, unauthenticated so orchestrators and `make up` can poll them."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ClientDep
from api.errors import ErrorResponse, error_response
from api.models import Health

router = APIRouter(tags=["health"])

# Readiness must answer quickly even when Temporal hangs; a probe that times out says nothing.
READINESS_TIMEOUT = timedelta(seconds=3)


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": ErrorResponse}})
async def readyz(client: ClientDep) -> Health | JSONResponse:
    try:
        healthy = await client.service_client.check_health(timeout=READINESS_TIMEOUT)
    except Exception as exc:  # any failure to reach Temporal means not ready
        return error_response(503, "unavailable", f"Temporal is not reachable: {type(exc).__name__}")
    if not healthy:
        return error_response(503, "unavailable", "Temporal reports itself unhealthy")
    return Health(status="ok", temporal="reachable")

"""GET /metrics: the API's Prometheus metrics (api/metrics.py).

Open to anyone when the API listens on loopback only (a scraper on the same host, `make up`);
otherwise it needs a bearer token holding `metrics:read`, like every route that is not a probe.
"""

from __future__ import annotations

import asyncio
import ipaddress
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.deps import (
    CatalogDep, ClientDep, MetricsDep, OptionalBearer, RbacDep, SettingsDep, authorize, principal_from_token,
)
from api.errors import ApiError
from steward import search_attributes as sa
from steward.logs import get_logger

router = APIRouter(include_in_schema=False)
log = get_logger(__name__)
# A scrape must answer even when Temporal is slow: the visibility gauges are then left as they were.
VISIBILITY_TIMEOUT_S = 3.0


def loopback_only(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def metrics_reader(request: Request, settings: SettingsDep, policy: RbacDep,
                         credentials: OptionalBearer) -> None:
    if loopback_only(settings.api_host):
        return
    if credentials is None:
        raise ApiError(401, "unauthenticated", "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    authorize(policy, await principal_from_token(request, credentials.credentials), "metrics:read")


@router.get("/metrics", dependencies=[Depends(metrics_reader)])
async def metrics(client: ClientDep, catalog: CatalogDep, api_metrics: MetricsDep) -> Response:
    try:
        await asyncio.wait_for(_count_pending_approvals(client, catalog, api_metrics), VISIBILITY_TIMEOUT_S)
    except Exception as exc:  # Temporal down or slow: the other metrics still answer
        log.warning("approvals pending not counted", error=type(exc).__name__)
    return Response(api_metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


async def _count_pending_approvals(client, catalog, api_metrics) -> None:
    for name in sorted(catalog.specs):
        query = (f'{sa.WORKFLOW_NAME.name} = "{name}" AND {sa.APPROVAL_STATE.name} = "pending" '
                 f'AND ExecutionStatus = "Running"')
        api_metrics.approvals_pending.labels(name).set((await client.count_workflows(query)).count)

"""Following runs: list, read one, cancel. Every route is limited to the caller's tenant."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from activities.events.delivery import dispatch
from api.deps import AuditDep, CatalogDep, ClientDep, PageTokensDep, SubscriptionsDep, require
from api.errors import ApiError, ErrorResponse
from api.models import CancelAccepted, RunDetail, RunPage, RunStatus
from api.paging import fetch_page
from api.run_records import (
    describe_for_tenant,
    detail_of,
    is_closed,
    run_link,
    summary_of,
    visibility_query,
)
from steward.identity import Principal
from workflows.declarative import EVENT_SIGNAL, ExternalEvent

router = APIRouter(prefix="/v1/runs", tags=["runs"])

MAX_PAGE_SIZE = 100
# Long enough to spare a client most polling; short enough for proxies' idle timeouts (often 60 s).
MAX_WAIT_S = 50
DEFAULT_PAGE_SIZE = 20
_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 422)}

RunReader = Annotated[Principal, Depends(require("runs:read"))]
RunCanceller = Annotated[Principal, Depends(require("runs:cancel"))]
RunSignaller = Annotated[Principal, Depends(require("runs:signal"))]
EVENT_NAME = r"^[a-z][a-z0-9_]*$"


class ExternalEventBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payload: dict[str, Any] = Field(default_factory=dict, description="What the other system reports; "
                                                                         "the waiting step's output.")


class EventAccepted(BaseModel):
    id: str
    event: str


@router.get("", response_model=RunPage, responses=_ERRORS)
async def list_runs(
    principal: RunReader,
    client: ClientDep,
    catalog: CatalogDep,
    page_tokens: PageTokensDep,
    workflow: str | None = None,
    status: RunStatus | None = None,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
    next_page_token: str | None = None,
) -> RunPage:
    if workflow is not None and catalog.get(workflow) is None:
        raise ApiError(404, "not_found", f"no workflow named {workflow!r}")
    runs, token = await fetch_page(client, page_tokens,
                                   visibility_query(principal.tenant, workflow, status), page_size, next_page_token)
    return RunPage(runs=[summary_of(e) for e in runs], next_page_token=token)


@router.get("/{run_id}", response_model=RunDetail, responses=_ERRORS)
async def get_run(
    run_id: str,
    principal: RunReader,
    client: ClientDep,
    catalog: CatalogDep,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S, description="Seconds to wait for a running run to end "
                                 "before answering; it answers as soon as the run ends.")] = 0,
) -> RunDetail:
    description = await describe_for_tenant(client, run_id, principal.tenant)
    return await detail_of(client, description, catalog.get(description.workflow_type),
                           wait=timedelta(seconds=wait) if wait else None)


@router.post("/{run_id}/events/{event}", status_code=202, response_model=EventAccepted, responses=_ERRORS)
async def post_event(run_id: str, event: Annotated[str, Path(pattern=EVENT_NAME, max_length=64)],
                     body: ExternalEventBody, principal: RunSignaller, client: ClientDep) -> EventAccepted:
    """Report an event to a run waiting for it (a declarative workflow's `wait_for` step): how a job
    in another system says it is done. The first report of an event counts."""
    description = await describe_for_tenant(client, run_id, principal.tenant)
    if is_closed(description):
        raise ApiError(409, "run_closed", f"run {run_id!r} has already ended ({summary_of(description).status.value})")
    await client.get_workflow_handle(run_id, run_id=description.run_id).signal(
        EVENT_SIGNAL, ExternalEvent(name=event, payload=body.payload))
    return EventAccepted(id=run_id, event=event)


@router.post("/{run_id}/cancel", status_code=202, response_model=CancelAccepted, responses=_ERRORS)
async def cancel_run(run_id: str, principal: RunCanceller, client: ClientDep, audit: AuditDep,
                     subscriptions: SubscriptionsDep) -> CancelAccepted:
    description = await describe_for_tenant(client, run_id, principal.tenant)
    if is_closed(description):
        raise ApiError(409, "run_closed", f"run {run_id!r} has already ended ({summary_of(description).status.value})")
    # Who asked is known only here: the run sees a cancellation, not its sender.
    entry = await asyncio.to_thread(
        audit.append, principal.tenant, f"{run_id}/{description.run_id}/cancel-requested/{uuid.uuid4()}",
        "run.cancel_requested", run_id=run_id, workflow=description.workflow_type,
        data={"by": principal.sub, "roles": list(principal.roles)})
    await dispatch(subscriptions, audit, principal.tenant, [entry], client)  # to subscribers, as the worker's are
    await client.get_workflow_handle(run_id, run_id=description.run_id).cancel()
    return CancelAccepted(id=run_id, links=run_link(run_id))

"""Responding to an incident: acknowledge it (stops the paging ladder), resolve it.

Both are Temporal updates carrying the caller's verified identity, like approval decisions
(api/updates.py). Permission `incidents:respond`; 409 when the incident is already acknowledged
or resolved, or the run is not an incident.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from temporalio.client import Client

from activities.incidents.models import AckInput, AckRecord, ResolveInput, ResolveRecord
from api.deps import ClientDep, require
from api.errors import ApiError, ErrorResponse
from api.run_records import describe_for_tenant, is_closed
from api.updates import ResultT, execute_verified_update
from steward.identity import Principal
from workflows.incident_response import (
    ACK_UPDATE,
    ALREADY_ACKNOWLEDGED,
    ALREADY_RESOLVED,
    FORBIDDEN_TYPES,
    RESOLVE_UPDATE,
)
from workflows.incident_response import NAME as INCIDENT_WORKFLOW

router = APIRouter(prefix="/v1/runs", tags=["incidents"])

Responder = Annotated[Principal, Depends(require("incidents:respond"))]
CONFLICTS = {ALREADY_ACKNOWLEDGED: "already_acknowledged", ALREADY_RESOLVED: "already_resolved"}
_ERRORS = {code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422)}


class RespondRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field("", max_length=2000)


async def respond(client: Client, run_id: str, principal: Principal, update: str, request: BaseModel,
                  result_type: type[ResultT]) -> ResultT:
    """Carry an incident update to the run as `principal`."""
    description = await describe_for_tenant(client, run_id, principal.tenant)
    if description.workflow_type != INCIDENT_WORKFLOW:
        raise ApiError(409, "not_an_incident", f"run {run_id!r} is a {description.workflow_type}, not an incident")
    closed = ApiError(409, "already_resolved", f"incident {run_id!r} has ended")
    if is_closed(description):
        raise closed
    return await execute_verified_update(client, description, principal, update, request, result_type,
                                         forbidden=FORBIDDEN_TYPES, conflicts=CONFLICTS, closed=closed)


@router.post("/{run_id}/ack", response_model=AckRecord, responses=_ERRORS)
async def acknowledge(run_id: str, body: RespondRequest, principal: Responder, client: ClientDep) -> AckRecord:
    return await respond(client, run_id, principal, ACK_UPDATE, AckInput(comment=body.comment), AckRecord)


@router.post("/{run_id}/resolve", response_model=ResolveRecord, responses=_ERRORS)
async def resolve(run_id: str, body: RespondRequest, principal: Responder, client: ClientDep) -> ResolveRecord:
    return await respond(client, run_id, principal, RESOLVE_UPDATE, ResolveInput(comment=body.comment), ResolveRecord)

"""Schedules: create, list, read, update, pause, trigger, backfill and delete a tenant's recurring
runs (api/schedules.py, docs/schedules.md).

Every route needs `schedules:manage`; creating or updating one also needs permission to start its
workflow (`runs:start:<workflow>`), since the schedule starts runs in its owner's name. Another
tenant's schedule is a 404, like an unknown one.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ValidationError
from temporalio.client import (
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleBackfill,
    ScheduleHandle,
    ScheduleUpdate,
)
from temporalio.service import RPCError, RPCStatusCode

from api.deps import CatalogDep, ClientDep, PageTokensDep, RbacDep, authorize, require
from api.errors import ApiError, ErrorResponse, validation_error
from api.schedules import (
    OVERLAP_POLICIES,
    BackfillRequest,
    NoteRequest,
    ScheduleCreate,
    ScheduleDetail,
    SchedulePage,
    ScheduleSettings,
    ScheduleUpdateRequest,
    ScheduleView,
    TriggerRequest,
    settings_digest,
    temporal_id,
    temporal_schedule,
    view_of,
    written_settings,
)
from steward import search_attributes as sa
from steward.identity import Principal
from workflows.catalog import Catalog
from workflows.spec import WorkflowSpec

router = APIRouter(prefix="/v1/schedules", tags=["schedules"])

Manager = Annotated[Principal, Depends(require("schedules:manage"))]
_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 422)}
MAX_PAGE = 100
LIST_RPC_TIMEOUT = timedelta(seconds=10)


def _startable(catalog: Catalog, policy, principal: Principal, name: str) -> WorkflowSpec:
    spec = catalog.get(name)
    if spec is None:
        raise ApiError(422, "validation_failed", f"no workflow named {name!r}; GET /v1/workflows lists them",
                       [{"field": "workflow", "message": "not a cataloged workflow"}])
    authorize(policy, principal, f"runs:start:{spec.name}")  # the schedule starts runs in its owner's name
    return spec


def _validated(spec: WorkflowSpec, data: dict) -> BaseModel:
    try:
        return spec.input_model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, prefix=("input",)) from None


def _refused_spec(exc: RPCError) -> Exception:
    """Temporal checks what our models cannot (a cron field's syntax, a calendar value out of
    range): its refusal is the caller's 422, not our 500."""
    if exc.status != RPCStatusCode.INVALID_ARGUMENT:
        return exc
    return ApiError(422, "validation_failed", f"request is not valid: spec: {exc.message}",
                    [{"field": "spec", "message": exc.message}])


async def _described(client, principal: Principal, name: str) -> tuple[ScheduleHandle, object]:
    """The tenant's schedule `name` and its description, or 404."""
    handle = client.get_schedule_handle(temporal_id(principal.tenant, name))
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise ApiError(404, "not_found", f"schedule {name!r} not found") from None
        raise
    # One made beside the API (the temporal CLI, the UI) has no request of Steward's to show.
    if not isinstance(description.schedule.action, ScheduleActionStartWorkflow) \
            or not await written_settings(description, client.data_converter):
        raise ApiError(404, "not_found", f"schedule {name!r} not found")
    return handle, description


@router.post("", status_code=201, response_model=ScheduleDetail, responses=_ERRORS)
async def create_schedule(body: ScheduleCreate, principal: Manager, client: ClientDep, catalog: CatalogDep,
                          policy: RbacDep, response: Response) -> ScheduleDetail:
    """Create a schedule. The same request again is 200 with the schedule as it is (a pipeline may
    create its schedule on every run); a different one for an existing name is 409."""
    spec = _startable(catalog, policy, principal, body.workflow)
    validated = _validated(spec, body.input)
    settings = ScheduleSettings.model_validate(body.model_dump(include=set(ScheduleSettings.model_fields)))
    digest = settings_digest(spec.name, validated.model_dump(mode="json"), settings)
    schedule = temporal_schedule(body.name, spec, validated, settings, principal, paused=body.paused,
                                 note=body.note, digest=digest)
    try:
        handle = await client.create_schedule(
            temporal_id(principal.tenant, body.name), schedule,
            memo={"tenant": principal.tenant, "owner": principal.sub, "workflow": spec.name, "name": body.name},
            search_attributes=sa.for_new_run(spec.name, principal.tenant, principal.sub))
    except RPCError as exc:
        raise _refused_spec(exc) from None
    except ScheduleAlreadyRunningError:
        handle, existing = await _described(client, principal, body.name)
        written = await written_settings(existing, client.data_converter)
        if written.get("request_sha256") != digest:
            raise ApiError(409, "schedule_exists", f"schedule {body.name!r} exists with another definition: "
                           "PATCH /v1/schedules/{name} changes it",
                           [{"field": "name", "message": "already a schedule of this tenant"}]) from None
        response.status_code = 200
        return await view_of(existing, client.data_converter, with_input=True)
    response.headers["Location"] = f"/v1/schedules/{body.name}"
    return await view_of(await handle.describe(), client.data_converter, with_input=True)


@router.get("", response_model=SchedulePage, responses=_ERRORS)
async def list_schedules(principal: Manager, client: ClientDep, page_tokens: PageTokensDep,
                         page_size: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
                         next_page_token: str | None = None) -> SchedulePage:
    # The tenant is a search attribute of the schedule itself: quoting cannot be escaped, the
    # tenant comes from the verified token.
    query = f"{sa.TENANT.name} = '{principal.tenant}'"
    listing = await client.list_schedules(query, page_size=page_size, rpc_timeout=LIST_RPC_TIMEOUT,
                                          next_page_token=page_tokens.decode(next_page_token, query))
    await listing.fetch_next_page()
    views: list[ScheduleView] = []
    for entry in listing.current_page or ():
        # The listing has no action: describe each (a page is at most 100, each a local read).
        try:
            _, description = await _described(client, principal, entry.id.split(":", 1)[1])
        except ApiError:
            continue  # deleted since it was listed
        views.append(await view_of(description, client.data_converter))
    return SchedulePage(schedules=views, next_page_token=page_tokens.encode(listing.next_page_token, query))


@router.get("/{name}", response_model=ScheduleDetail, responses=_ERRORS)
async def get_schedule(name: str, principal: Manager, client: ClientDep) -> ScheduleDetail:
    """The schedule, its next five action times and its recent runs."""
    _, description = await _described(client, principal, name)
    return await view_of(description, client.data_converter, with_input=True)


@router.patch("/{name}", response_model=ScheduleDetail, responses=_ERRORS)
async def update_schedule(name: str, body: ScheduleUpdateRequest, principal: Manager, client: ClientDep,
                          catalog: CatalogDep, policy: RbacDep) -> ScheduleDetail:
    handle, description = await _described(client, principal, name)
    current = await view_of(description, client.data_converter, with_input=True)
    spec = _startable(catalog, policy, principal, current.workflow)
    validated = _validated(spec, body.input if body.input is not None else current.input)
    changes = body.model_dump(exclude_unset=True, exclude={"input"})
    try:
        settings = ScheduleSettings.model_validate({**current.model_dump(include=set(ScheduleSettings.model_fields)),
                                                    **changes})
    except ValidationError as exc:
        raise validation_error(exc, prefix=()) from None
    digest = settings_digest(spec.name, validated.model_dump(mode="json"), settings)
    # The schedule keeps its owner: runs stay in the name of who created it.
    owner = Principal(sub=current.owner, roles=principal.roles, tenant=principal.tenant)
    schedule = temporal_schedule(name, spec, validated, settings, owner, paused=current.paused, note=current.note,
                                 digest=digest)
    try:
        await handle.update(lambda _: ScheduleUpdate(schedule=schedule))
    except RPCError as exc:
        raise _refused_spec(exc) from None
    return await view_of(await handle.describe(), client.data_converter, with_input=True)


@router.post("/{name}/pause", response_model=ScheduleView, responses=_ERRORS)
async def pause_schedule(name: str, body: NoteRequest, principal: Manager, client: ClientDep) -> ScheduleView:
    handle, _ = await _described(client, principal, name)
    await handle.pause(note=body.note or f"paused by {principal.sub}")
    return await view_of(await handle.describe(), client.data_converter)


@router.post("/{name}/unpause", response_model=ScheduleView, responses=_ERRORS)
async def unpause_schedule(name: str, body: NoteRequest, principal: Manager, client: ClientDep) -> ScheduleView:
    handle, _ = await _described(client, principal, name)
    await handle.unpause(note=body.note or f"unpaused by {principal.sub}")
    return await view_of(await handle.describe(), client.data_converter)


@router.post("/{name}/trigger", status_code=202, response_model=ScheduleView, responses=_ERRORS)
async def trigger_schedule(name: str, body: TriggerRequest, principal: Manager, client: ClientDep) -> ScheduleView:
    """Start a run now, whatever the calendar says (and even while paused)."""
    handle, _ = await _described(client, principal, name)
    await handle.trigger(overlap=OVERLAP_POLICIES[body.overlap] if body.overlap else None)
    return await view_of(await handle.describe(), client.data_converter)


@router.post("/{name}/backfill", status_code=202, response_model=ScheduleView, responses=_ERRORS)
async def backfill_schedule(name: str, body: BackfillRequest, principal: Manager, client: ClientDep) -> ScheduleView:
    """Start the runs the schedule would have started between start_at and end_at."""
    handle, description = await _described(client, principal, name)
    overlap = OVERLAP_POLICIES[body.overlap] if body.overlap else description.schedule.policy.overlap
    await handle.backfill(ScheduleBackfill(start_at=body.start_at, end_at=body.end_at, overlap=overlap))
    return await view_of(await handle.describe(), client.data_converter)


@router.delete("/{name}", status_code=204, responses=_ERRORS)
async def delete_schedule(name: str, principal: Manager, client: ClientDep) -> Response:
    """Delete the schedule. Runs it started go on."""
    handle, _ = await _described(client, principal, name)
    await handle.delete()
    return Response(status_code=204)

"""Events as they happen, over Server-Sent Events: one run's, or all of the caller's tenant's.

Both streams read the audit log (activities/events/ makes events of its entries; api/event_hub.py
tails it), so a stream and a webhook subscription see the same events with the same ids.

- GET /v1/runs/{id}/events replays the run's events so far, then streams new ones, and ends after
  the run's terminal event. Each SSE `id` is the event's `sequence`: a client that reconnects with
  Last-Event-ID gets what came after it.
- GET /v1/events streams the tenant's new events, filtered by workflow and type. Its SSE ids are
  positions in the tenant's log: with Last-Event-ID it resumes from there.

A comment line every STEWARD_EVENTS_HEARTBEAT_S keeps proxies from closing a quiet stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent
from temporalio.client import Client

from activities.audit.log import AuditLog
from activities.events.feed import RunSequences, events_of_run
from activities.events.model import TERMINAL_TYPES, TYPES, Event, type_schemas
from api.deps import AuditDep, CatalogDep, ClientDep, CurrentPrincipal, SettingsDep, require
from api.errors import ApiError, ErrorResponse
from api.event_hub import EventHub, Listener, TooManyStreams
from api.models import EventTypeName, WorkflowName
from api.run_records import describe_for_tenant, is_closed
from steward.identity import Principal

router = APIRouter(tags=["events"])

RunReader = Annotated[Principal, Depends(require("runs:read"))]
_ERRORS = {code: {"model": ErrorResponse} for code in (401, 403, 404, 422, 429)}
_STREAM = {200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events: each `data` is an Event."}}
# A run's stream with nothing new asks Temporal this often whether the run has ended without a
# terminal event (terminated, or from before events existed), so the stream does not wait forever.
CLOSED_CHECK_S = 20.0
# What EventSource waits before reconnecting after a dropped connection.
RECONNECT_MS = 2000


async def get_event_hub(request: Request) -> EventHub:
    return request.app.state.event_hub


EventHubDep = Annotated[EventHub, Depends(get_event_hub)]


class EventTypeInfo(BaseModel):
    type: str
    description: str
    terminal: bool = Field(description="A run's stream ends after it.")
    schema_: dict[str, Any] = Field(alias="schema", description="JSON Schema of a whole event of this type.")


class EventTypeList(BaseModel):
    types: list[EventTypeInfo]


@router.get("/v1/events/types", response_model=EventTypeList, responses=_ERRORS)
async def event_types(_: CurrentPrincipal) -> EventTypeList:
    """Every event type, with its description and the JSON Schema of an event of that type."""
    return EventTypeList(types=[EventTypeInfo.model_validate(t) for t in type_schemas()])


# The SSE spec's resumption header: the id of the last event the client got (a sequence number).
# Empty means none, as a browser sends it before any event had an id.
LastEventId = Annotated[str | None, Header(alias="Last-Event-ID", pattern=r"^[0-9]{0,20}$",
                                           description="Resume after this event.")]


def _last_event_id(header: str | None, query: int | None) -> int:
    return int(header) if header else query or 0  # the header's pattern admits digits only


async def _listen(hub: EventHub, principal: Principal) -> Listener:
    try:
        return await hub.listen(principal.tenant)
    except TooManyStreams:
        raise ApiError(429, "too_many_streams", f"this tenant already has {hub.max_streams_per_tenant} event "
                       "streams open; close one, or follow several runs with GET /v1/events",
                       headers={"Retry-After": "5"}) from None


def _sse(event: Event, sse_id: int) -> ServerSentEvent:
    return ServerSentEvent(data=event.model_dump_json(), event=event.type, id=str(sse_id), retry=RECONNECT_MS)


@router.get("/v1/runs/{run_id}/events", response_class=EventSourceResponse, responses={**_STREAM, **_ERRORS})
async def stream_run_events(
    run_id: str,
    principal: RunReader,
    client: ClientDep,
    audit: AuditDep,
    hub: EventHubDep,
    settings: SettingsDep,
    last_event_id: LastEventId = None,
    after: Annotated[int | None, Query(ge=0, description="Resume after this sequence number (for clients that "
                                                         "cannot send Last-Event-ID).")] = None,
) -> EventSourceResponse:
    """The run's events so far, then new ones as they happen; ends after the terminal event."""
    start_after = _last_event_id(last_event_id, after)
    description = await describe_for_tenant(client, run_id, principal.tenant)
    listener = await _listen(hub, principal)
    stream = _run_stream(listener, audit, client, principal.tenant, run_id, start_after, is_closed(description))
    return EventSourceResponse(stream, ping=settings.events_heartbeat_s, headers={"Cache-Control": "no-store"})


async def _run_stream(listener: Listener, audit: AuditLog, client: Client, tenant: str, run_id: str,
                      after: int, closed: bool) -> AsyncIterator[ServerSentEvent]:
    sent = after
    try:
        history = await asyncio.to_thread(events_of_run, audit, tenant, run_id)
        for event in history:
            if event.sequence > sent:
                yield _sse(event, event.sequence)
                sent = event.sequence
        if closed or any(e.type in TERMINAL_TYPES for e in history):
            return
        sequences = RunSequences(audit, tenant)
        while True:
            try:
                entry = await asyncio.wait_for(listener.queue.get(), CLOSED_CHECK_S)
            except TimeoutError:
                if await _ended_quietly(client, run_id):
                    for event in await asyncio.to_thread(events_of_run, audit, tenant, run_id):
                        if event.sequence > sent:
                            yield _sse(event, event.sequence)
                            sent = event.sequence
                    return
                continue
            if entry is None:
                return  # fell too far behind: the client reconnects with Last-Event-ID
            if entry.run_id != run_id:
                continue
            event = await asyncio.to_thread(sequences.event, entry)
            if event is None or event.sequence <= sent:
                continue
            yield _sse(event, event.sequence)
            sent = event.sequence
            if event.type in TERMINAL_TYPES:
                return
    finally:
        listener.close()


async def _ended_quietly(client: Client, run_id: str) -> bool:
    try:
        return is_closed(await client.get_workflow_handle(run_id).describe())
    except Exception:  # Temporal unreachable: keep the stream, ask again later
        return False


@router.get("/v1/events", response_class=EventSourceResponse, responses={**_STREAM, **_ERRORS})
async def stream_tenant_events(
    principal: RunReader,
    audit: AuditDep,
    hub: EventHubDep,
    settings: SettingsDep,
    catalog: CatalogDep,
    workflow: Annotated[list[WorkflowName] | None, Query(description="Only these workflows' events.")] = None,
    type: Annotated[list[EventTypeName] | None, Query(description="Only events of these types "
                                                                   "(GET /v1/events/types).")] = None,
    last_event_id: LastEventId = None,
    after: Annotated[int | None, Query(ge=0, description="Resume after this position in the tenant's log.")] = None,
) -> EventSourceResponse:
    """The tenant's events as they happen (from Last-Event-ID or `after` when given, else from now)."""
    unknown_types = sorted(set(type or ()) - set(TYPES))
    if unknown_types:
        raise ApiError(422, "validation_failed", "request is not valid: type",
                       [{"field": "type", "message": f"unknown event type {unknown_types[0]!r}; "
                                                     "GET /v1/events/types lists them"}])
    unknown_workflows = sorted(w for w in workflow or () if catalog.get(w) is None)
    if unknown_workflows:
        raise ApiError(422, "validation_failed", "request is not valid: workflow",
                       [{"field": "workflow", "message": f"no workflow named {unknown_workflows[0]!r}"}])
    resume = bool(last_event_id) or after is not None
    start_after = _last_event_id(last_event_id, after)
    listener = await _listen(hub, principal)
    stream = _tenant_stream(listener, audit, principal.tenant, start_after if resume else None,
                            set(workflow or ()), set(type or ()))
    return EventSourceResponse(stream, ping=settings.events_heartbeat_s, headers={"Cache-Control": "no-store"})


async def _tenant_stream(listener: Listener, audit: AuditLog, tenant: str, after: int | None,
                         workflows: set[str], types: set[str]) -> AsyncIterator[ServerSentEvent]:
    sequences = RunSequences(audit, tenant)

    def wanted(event: Event | None) -> bool:
        return (event is not None and (not workflows or event.workflow in workflows)
                and (not types or event.type in types))

    try:
        cursor = after if after is not None else listener.position  # from now: nothing from before
        while after is not None:  # catch up from the client's position, then follow the tail
            entries = await asyncio.to_thread(audit.following, tenant, cursor, limit=500)
            for entry in entries:
                event = await asyncio.to_thread(sequences.event, entry)
                if wanted(event):
                    yield _sse(event, entry.seq)  # type: ignore[arg-type]
                cursor = entry.seq
            if len(entries) < 500:
                break
        while True:
            entry = await listener.queue.get()
            if entry is None:
                return
            if entry.seq <= cursor:
                continue
            cursor = entry.seq
            event = await asyncio.to_thread(sequences.event, entry)
            if wanted(event):
                yield _sse(event, entry.seq)  # type: ignore[arg-type]
    finally:
        listener.close()

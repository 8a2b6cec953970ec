"""Event streams over Server-Sent Events, read by a real SSE client (httpx-sse over httpx):
a run's events replayed then live until it ends, resumed with Last-Event-ID, checked against the
published schemas, tenant-checked, bounded per tenant, and the tenant-wide stream filtered."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import jsonschema
from httpx_sse import aconnect_sse

from tests.support import eventually, free_port, serve_api
from tests.test_compliance_workflow import APPROVER, CLEAR, PAYSLIP, waiting_for_approval

REVIEWED = {"input": {"applicant": {**CLEAR, "pep": True}, "documents": [PAYSLIP]}}
CLEARED = {"input": {"applicant": CLEAR, "documents": [PAYSLIP]}}
READ_TIMEOUT_S = 60


async def start(http, auth, body: dict) -> str:
    response = await http.post("/v1/workflows/compliance-documentation/runs", json=body,
                               headers=auth(sub="rita", roles=("requester",)))
    assert response.status_code == 202, response.text
    return response.json()["id"]


@asynccontextmanager
async def stream(http: httpx.AsyncClient, path: str, headers: dict[str, str]) -> AsyncIterator[AsyncIterator[dict]]:
    """The stream's events as {"id", "event", "data"} dicts, until the server ends it."""
    async with aconnect_sse(http, "GET", path, headers=headers,
                            timeout=httpx.Timeout(10, read=READ_TIMEOUT_S)) as source:
        source.response.raise_for_status()

        async def events() -> AsyncIterator[dict]:
            async for sse in source.aiter_sse():
                yield {"id": sse.id, "event": sse.event, "data": json.loads(sse.data)}

        yield events()


async def until(events: AsyncIterator[dict], event_type: str) -> list[dict]:
    seen = []
    async for event in events:
        seen.append(event)
        if event["event"] == event_type:
            return seen
    raise AssertionError(f"the stream ended before {event_type}: {[e['event'] for e in seen]}")


async def test_a_runs_stream_replays_then_follows_it_live_and_ends_after_its_last_event(http, auth, tenant):
    run_id = await start(http, auth, REVIEWED)
    await waiting_for_approval(http, auth, run_id)
    async with stream(http, f"/v1/runs/{run_id}/events", auth()) as events:
        before = await until(events, "approval.requested")  # replayed: it happened before we connected
        decided = await http.post(f"/v1/runs/{run_id}/approvals", json={"decision": "approve", "comment": "Fine."},
                                  headers=auth(**APPROVER))
        assert decided.status_code == 200, decided.text
        after = [event async for event in events]  # live, until the server ends the stream

    received = before + after
    types = [e["event"] for e in received]
    assert types[0] == "run.started" and types[-1] == "run.completed", types
    for expected in ("run.stage_changed", "llm.call_recorded", "approval.voted", "approval.decided",
                     "artifact.written"):
        assert expected in types, (expected, types)
    assert [e["data"]["sequence"] for e in received] == list(range(1, len(received) + 1))
    assert [e["id"] for e in received] == [str(n) for n in range(1, len(received) + 1)]
    assert len({e["data"]["id"] for e in received}) == len(received)
    assert {(e["data"]["run_id"], e["data"]["tenant"], e["data"]["workflow"]) for e in received} == {
        (run_id, tenant, "compliance-documentation")}
    stages = [e["data"]["data"]["stage"] for e in received if e["event"] == "run.stage_changed"]
    assert stages[-1] == "done" and "review" in stages
    vote = next(e["data"]["data"] for e in received if e["event"] == "approval.voted")
    decision = next(e["data"]["data"] for e in received if e["event"] == "approval.decided")
    assert vote["decision"] == "approve" and decision["status"] == "approved"
    assert decision["receipt_sha256s"] == [vote["receipt_sha256"]]
    # No personal data: not the applicant's name, document or comment, nor who asked or decided.
    text = json.dumps(received)
    for personal in (CLEAR["full_name"], CLEAR["document_id"], CLEAR["date_of_birth"], "Fine.", "rita", "vera"):
        assert personal not in text, personal


async def test_every_streamed_event_fits_its_published_schema(http, auth):
    run_id = await start(http, auth, CLEARED)
    listed = (await http.get("/v1/events/types", headers=auth())).json()["types"]
    schemas = {t["type"]: t["schema"] for t in listed}
    assert {"run.started", "run.stage_changed", "run.completed", "run.failed", "run.cancelled", "run.timed_out",
            "approval.requested", "approval.voted", "approval.decided", "incident.paged", "incident.acknowledged",
            "incident.resolved", "artifact.written", "llm.call_recorded"} <= set(schemas)
    async with stream(http, f"/v1/runs/{run_id}/events", auth()) as events:
        received = [event async for event in events]
    assert received and received[-1]["event"] == "run.completed"
    for event in received:
        jsonschema.validate(event["data"], schemas[event["event"]])
    wrong = {**received[-1]["data"], "type": "run.failed"}
    try:
        jsonschema.validate(wrong, schemas["run.completed"])
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("a run.completed schema accepted another type")


async def test_a_stream_resumes_after_last_event_id_with_the_same_events(http, auth):
    run_id = await start(http, auth, CLEARED)
    async with stream(http, f"/v1/runs/{run_id}/events", auth()) as events:
        first = [event async for event in events]
    assert len(first) >= 4
    async with stream(http, f"/v1/runs/{run_id}/events", {**auth(), "Last-Event-ID": first[2]["id"]}) as events:
        rest = [event async for event in events]
    assert rest == first[3:]
    async with stream(http, f"/v1/runs/{run_id}/events?after=1", auth()) as events:
        assert [event async for event in events] == first[1:]

    refused = await http.get(f"/v1/runs/{run_id}/events", headers={**auth(), "Last-Event-ID": "not-a-number"})
    assert refused.status_code == 422
    assert refused.json()["error"]["details"][0]["field"] == "header.Last-Event-ID"


async def test_another_tenants_run_has_no_stream(http, auth):
    run_id = await start(http, auth, CLEARED)
    other = await http.get(f"/v1/runs/{run_id}/events", headers=auth(tenant="someone-else"))
    assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
    unknown = await http.get("/v1/runs/no-such-run/events", headers=auth())
    assert unknown.status_code == 404
    auditor_without_runs_read = await http.get(f"/v1/runs/{run_id}/events", headers=auth(roles=("nobody",)))
    assert auditor_without_runs_read.status_code == 403


async def test_the_tenant_stream_brings_new_events_filtered_by_type(http, auth):
    received: list[dict] = []
    async with stream(http, "/v1/events?type=run.completed&type=run.started", auth()) as events:
        async def read_two() -> None:
            async for event in events:
                received.append(event)
                if len(received) == 2:
                    return

        reading = asyncio.create_task(read_two())
        run_id = await start(http, auth, CLEARED)
        await asyncio.wait_for(reading, READ_TIMEOUT_S)
    assert [e["event"] for e in received] == ["run.started", "run.completed"]
    assert {e["data"]["run_id"] for e in received} == {run_id}
    first_id = int(received[0]["id"])

    # Resuming from the first: the completion again, with the same id and event.
    async with stream(http, "/v1/events?type=run.completed", {**auth(), "Last-Event-ID": str(first_id)}) as events:
        resumed = await anext(events)
    assert resumed == received[1]

    bad = await http.get("/v1/events?type=run.exploded", headers=auth())
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "type"


async def test_the_tenant_stream_filters_by_workflow(http, auth, gate):
    async with stream(http, "/v1/events?workflow=document-fingerprint&type=run.started", auth()) as events:
        reading = asyncio.create_task(anext(events))
        gated = await http.post("/v1/workflows/test-gated/runs", json={"input": gate}, headers=auth())
        fingerprint = await http.post("/v1/workflows/document-fingerprint/runs", headers=auth(),
                                      json={"input": {"documents": [{"name": "a.txt", "text": "hello"}]}})
        first = await asyncio.wait_for(reading, READ_TIMEOUT_S)
    assert first["data"]["run_id"] == fingerprint.json()["id"] != gated.json()["id"]
    await http.post(f"/v1/runs/{gated.json()['id']}/cancel", headers=auth())
    unknown = await http.get("/v1/events?workflow=no-such-workflow", headers=auth())
    assert unknown.status_code == 422 and unknown.json()["error"]["details"][0]["field"] == "workflow"


async def test_a_quiet_stream_gets_heartbeats(client, settings, worker, auth):
    brisk = settings.model_copy(update={"api_port": free_port(), "events_heartbeat_s": 0.2})
    async with serve_api(brisk, client) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        async with http.stream("GET", "/v1/events", headers=auth()) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.aiter_lines()
            comment = await asyncio.wait_for(anext(line async for line in lines if line.startswith(":")), 10)
    assert comment.startswith(": ping")


async def test_streams_beyond_the_tenants_limit_are_refused_with_429(client, settings, worker, auth, tenant):
    limited = settings.model_copy(update={"api_port": free_port(), "events_max_streams_per_tenant": 2})
    async with serve_api(limited, client) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        async with stream(http, "/v1/events", auth()), stream(http, "/v1/events", auth()):
            refused = await http.get("/v1/events", headers=auth())
            assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_streams"
            assert refused.headers["Retry-After"]
            async with stream(http, "/v1/events", auth(tenant=f"{tenant}-other")):
                pass  # another tenant's streams count against its own limit

        async def admitted() -> bool | None:  # closed streams give their places back
            async with aconnect_sse(http, "GET", "/v1/events", headers=auth()) as source:
                return True if source.response.status_code == 200 else None

        assert await eventually(admitted, "a stream to be admitted again")

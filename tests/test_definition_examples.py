"""The shipped definitions (definitions/*.yaml), end to end: started through the API, run by the
worker, against real local servers — a records API, a test runner, an OpenAI-compatible endpoint
and a webhook receiver."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from activities.llm.service import configure
from steward import runtime
from tests.fake_openai import Reply, answer, serve_fake_openai
from tests.support import eventually, free_port, serve_api, serve_asgi, wait_for_run
from tests.test_llm_endpoint import endpoint_settings
from tests.test_webhooks import serve_receiver


@contextmanager
def worker_settings(**changes: Any) -> Iterator[None]:
    """The in-process worker's activities read these settings for the test's length."""
    before = runtime.settings()
    runtime.configure(before.model_copy(update=changes))
    try:
        yield
    finally:
        runtime.configure(before)


@asynccontextmanager
async def api(settings, client) -> AsyncIterator[httpx.AsyncClient]:
    own = settings.model_copy(update={"api_port": free_port()})  # the shipped definitions/ only
    async with serve_api(own, client) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        yield http


async def test_the_design_cards_four_steps_extract_classify_report_and_wait_for_a_person(
        client, settings, worker, auth):
    applicant = {"full_name": "Ada Example", "date_of_birth": "1985-04-12", "country": "DE",
                 "document_id": "P-4471", "occupation": "engineer", "annual_income": 85000,
                 "source_of_funds": "salary", "pep": False}
    documents = [{"name": "payslip.txt", "text": "Monthly salary statement for a software engineer."}]
    async with api(settings, client) as http:
        listed = {w["name"]: w for w in (await http.get("/v1/workflows", headers=auth())).json()["workflows"]}
        assert listed["compliance-documentation-steps"]["tags"] == ["declarative"]
        started = await http.post("/v1/workflows/compliance-documentation-steps/runs",
                                  json={"input": {"applicant": applicant, "documents": documents}},
                                  headers=auth(sub="rita", roles=("requester",)))
        assert started.status_code == 202, started.text
        run_id = started.json()["id"]

        async def waiting() -> dict | None:
            run = (await http.get(f"/v1/runs/{run_id}", headers=auth())).json()
            return run if run["status"] == "waiting_for_approval" else None

        run = await eventually(waiting, "the run to wait for a person")
        # Written before the decision, on the CPU queue, and listed with the run; the classification
        # is in the run's LLM ledger like a code workflow's.
        (report,) = run["artifacts"]
        assert report["name"] == "compliance-report.pdf" and run["stage"] == "human_approval"
        pdf = await http.get(f"/v1/runs/{run_id}/artifacts/compliance-report.pdf", headers=auth())
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
        (record,) = run["llm"]["records"]
        assert record["task"] == "risk-classification" and record["step"] == "classify_risk"
        assert len(run["definition_sha256"]) == 64
        (approval,) = run["approvals"]
        assert approval["title"] == "Compliance review P-4471"
        assert approval["shown"]["report_sha256"] == report["sha256"]

        decided = await http.post(f"/v1/runs/{run_id}/approvals", json={"decision": "approve"},
                                  headers=auth(sub="vera", roles=("approver",)))
        assert decided.status_code == 200, decided.text
        run = await wait_for_run(http, run_id, auth())
    assert run["status"] == "completed", run
    assert run["result"]["output"] == {"decision": "approved", "decided_by": ["vera"], "risk_level": "low",
                                       "report": "compliance-report.pdf"}
    assert list(run["result"]["steps"]) == ["extract_data", "classify_risk", "generate_report", "human_approval"]


RECORDS = {
    "acme": {"id": "acme", "text": "Acme Robotics GmbH, Munich, Germany. 240 employees. Industrial robots."},
    "globex": {"id": "globex", "text": "Globex: a company. Size unknown."},
}


@asynccontextmanager
async def records_api() -> AsyncIterator[str]:
    async def record(request: Request) -> Response:
        found = RECORDS.get(request.path_params["id"])
        return JSONResponse(found) if found else JSONResponse({"error": "no such record"}, status_code=404)

    port = free_port()
    async with serve_asgi(Starlette(routes=[Route("/api/records/{id}", record)]), port):
        yield f"http://127.0.0.1:{port}/api"


def extraction(body: dict[str, Any]) -> Reply:
    """The model: a valid answer for Acme; for Globex an answer its schema refuses, twice."""
    data = body["messages"][1]["content"]
    if "Acme" in data:
        return answer({"legal_name": "Acme Robotics GmbH", "country": "DE", "employees": 240,
                       "industry": "manufacturing"})
    return answer({"legal_name": "Globex", "country": "Germany", "employees": -1, "industry": "widgets"})


async def test_the_enrichment_pipeline_fetches_extracts_flags_what_fails_and_notifies(
        client, settings, worker, auth):
    async with records_api() as records_url, serve_fake_openai() as model, serve_receiver() as receiver:
        model.respond = extraction
        configure(endpoint_settings(model.url))
        try:
            with worker_settings(http_endpoints={"records": records_url}, notify_webhook_url=receiver.url):
                async with api(settings, client) as http:
                    started = await http.post("/v1/workflows/enrich-records/runs", headers=auth(), json={
                        "input": {"records": [{"id": "acme"}, {"id": "missing"}, {"id": "globex"}]}})
                    assert started.status_code == 202, started.text
                    run = await wait_for_run(http, started.json()["id"], auth())
        finally:
            configure(None)
    assert run["status"] == "completed", run
    assert run["result"]["output"] == {
        "enriched": [{"id": "acme", "fields": {"legal_name": "Acme Robotics GmbH", "country": "DE",
                                                "employees": 240, "industry": "manufacturing"}}],
        "flagged": [{"id": "globex", "reasons": ["the model's answer for enrich-records.extract was invalid twice"]}],
        "not_found": [f"{records_url}/records/missing"],
    }
    # The definition's own instructions and schema went to the model; the record went as fenced data.
    first = model.requests[0]["body"]
    assert "never guess" in first["messages"][0]["content"]
    assert first["response_format"]["json_schema"]["name"] == "enrich-records_extract"
    assert "<<<DATA" in first["messages"][1]["content"]
    assert len(model.requests) == 3  # Acme once; Globex, and its repair
    assert [r["task"] for r in run["llm"]["records"]] == ["enrich-records.extract"] * 2
    (sent,) = receiver.requests
    message = json.loads(sent.body)
    assert message["data"]["title"] == "Enrichment finished: 1 enriched", message
    assert message["data"]["lines"] == ["1 flagged for a person", "1 not found at the source"]


@asynccontextmanager
async def job_runner(api_url: str, token: dict[str, str], outcome: dict[str, int] | None) -> AsyncIterator[Any]:
    """Another system's test runner: it takes a job, runs it, and reports back to Steward (never,
    with no `outcome`); it records the jobs it was asked to start and to cancel."""
    jobs: list[dict[str, Any]] = []
    cancelled: list[dict[str, Any]] = []
    tasks: list[asyncio.Task] = []

    async def report(callback: dict[str, str]) -> None:
        await asyncio.sleep(0.5)  # the tests run
        async with httpx.AsyncClient(base_url=api_url) as steward:
            sent = await steward.post(f"/v1/runs/{callback['run_id']}/events/{callback['event']}",
                                      json={"payload": outcome}, headers=token)
            assert sent.status_code == 202, sent.text

    async def start(request: Request) -> Response:
        job = await request.json()
        jobs.append({**job, "idempotency_key": request.headers["idempotency-key"]})
        if outcome is not None:
            tasks.append(asyncio.create_task(report(job["callback"])))
        return JSONResponse({"job_id": f"job-{len(jobs)}"}, status_code=202)

    async def cancel(request: Request) -> Response:
        cancelled.append(await request.json())
        return Response(status_code=204)

    port = free_port()
    routes = [Route("/jobs", start, methods=["POST"]), Route("/jobs/cancel", cancel, methods=["POST"])]
    async with serve_asgi(Starlette(routes=routes), port):
        yield f"http://127.0.0.1:{port}", jobs, cancelled
    await asyncio.gather(*tasks)


async def test_the_test_execution_job_starts_a_job_waits_for_its_callback_and_reports_counts(
        client, settings, worker, auth):
    async with serve_receiver() as receiver, api(settings, client) as http:
        runner_token = auth(sub="ci-runner", roles=("operator",))
        async with job_runner(str(http.base_url), runner_token, {"passed": 41, "failed": 1}) as (runner_url, jobs, _):
            with worker_settings(notify_webhook_url=receiver.url):
                started = await http.post("/v1/workflows/test-execution/runs", headers=auth(), json={
                    "input": {"runner_url": runner_url, "suite": "smoke", "commit": "4f2a9c1"}})
                assert started.status_code == 202, started.text
                run_id = started.json()["id"]
                run = await wait_for_run(http, run_id, auth())
    assert run["status"] == "completed", run
    assert run["result"]["output"] == {"suite": "smoke", "job": "job-1", "passed": 41, "failed": 1, "ok": False}
    (job,) = jobs
    assert job["suite"] == "smoke" and job["commit"] == "4f2a9c1"
    assert job["callback"] == {"run_id": run_id, "event": "job_finished"}
    assert job["idempotency_key"] == f"{run_id}/start_job"
    (sent,) = receiver.requests
    assert json.loads(sent.body)["data"]["title"] == "Tests smoke: 41 passed, 1 failed"

    # What the Temporal UI shows: the definition as the run's summary, each activity under its step.
    handle = client.get_workflow_handle(run_id)
    assert await (await handle.describe()).static_summary() == (
        "test-execution: Starts a test job over HTTP, waits for its completion callback and reports passed "
        "and failed counts.")
    encoded = [event.user_metadata.summary async for event in handle.fetch_history_events()
               if event.user_metadata.HasField("summary")]
    decoded = await client.data_converter.payload_codec.decode(encoded)  # summaries are encrypted too
    summaries = [client.data_converter.payload_converter.from_payload(payload, str) for payload in decoded]
    assert summaries[1:] == ["start_job: POST", "report: webhook"]  # after the run's own


async def test_cancelling_a_test_execution_run_asks_the_runner_to_cancel_its_job(client, settings, worker, auth):
    async with api(settings, client) as http:
        async with job_runner(str(http.base_url), auth(), None) as (runner_url, jobs, cancelled):
            started = await http.post("/v1/workflows/test-execution/runs", headers=auth(), json={
                "input": {"runner_url": runner_url, "suite": "nightly"}})
            run_id = started.json()["id"]

            async def waiting() -> bool | None:
                run = (await http.get(f"/v1/runs/{run_id}", headers=auth())).json()
                return True if run["stage"] == "job_finished" else None

            await eventually(waiting, "the run to wait for the runner's callback")
            asked = await http.post(f"/v1/runs/{run_id}/cancel", headers=auth())
            assert asked.status_code == 202, asked.text
            run = await wait_for_run(http, run_id, auth())
    assert run["status"] == "cancelled", run
    assert [job["suite"] for job in jobs] == ["nightly"] and cancelled == [{"run_id": run_id}]

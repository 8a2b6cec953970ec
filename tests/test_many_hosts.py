"""Steward on several machines, shown on one: one Temporal dev server, two API processes and two
worker processes, each with a data dir of its own, sharing only an S3 bucket (moto's server), a
Redis (redis-server) and their secrets. A hundred compliance reviews go through the two APIs in
turn while one worker is SIGKILLed; every run completes, every report downloads from either API,
the LLM spend both workers recorded adds up exactly, and the two APIs share one rate limit.

The suite runs 40 reviews, to stay within its time budget (a killed worker's report waits out its
one-minute start-to-close timeout whatever the count); the full proof is
`STEWARD_MANY_HOSTS_RUNS=100 .venv/bin/python -m pytest -s tests/test_many_hosts.py`, which prints
how long the runs took."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from activities.llm.spend import RedisSpendLedger
from steward import search_attributes
from steward.codec import new_key_entry
from steward.identity import Principal, issue_token
from tests.conftest import temporal_binary
from workflows.compliance_documentation import SPEC
from tests.fake_openai import answer, serve_fake_openai
from tests.support import eventually, free_port
from tests.test_object_store_s3 import CREDENTIALS, new_bucket, running_moto
from tests.test_rate_limits_redis import needs_redis, running_redis

RUNS = int(os.environ.get("STEWARD_MANY_HOSTS_RUNS", "40"))
IN_FLIGHT = 20
KILL_AFTER = RUNS // 3  # completed runs before one worker is SIGKILLed
RATE_LIMIT = 300
SECRET = "many-hosts-secret-0123456789abcdef0123456789"
# The classification every call gets for the spec's sample (a clear case): policy decides, no person.
CLEAR = {"risk_level": "low", "decision": "clear", "confidence": 0.95, "reasons": ["Salary, teacher, EU."],
         "explanation": "Nothing in the facts or documents raises the risk."}
# gpt-4o-mini's default prices, and the fake endpoint's usage per call: 120 tokens in, 40 out.
CALL_COST_USD = (120 * 0.15 + 40 * 0.6) / 1_000_000
pytestmark = needs_redis


def token(sub: str, tenant: str = "acme") -> dict[str, str]:
    issued = issue_token(SECRET, Principal(sub=sub, roles=("operator", "approver"), tenant=tenant),
                         timedelta(hours=1))
    return {"Authorization": f"Bearer {issued}"}


@asynccontextmanager
async def process(role: str, env: dict[str, str], log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("w") as output:
        started = await asyncio.create_subprocess_exec(sys.executable, "-m", "steward", role, env=env,
                                                       stdout=output, stderr=output, start_new_session=True)
    try:
        yield started
    finally:
        try:
            os.killpg(started.pid, signal.SIGTERM)
            await asyncio.wait_for(started.wait(), 30)
        except ProcessLookupError:  # killed by the test already
            pass
        except TimeoutError:
            os.killpg(started.pid, signal.SIGKILL)
        await started.wait()


async def ready(url: str) -> bool:
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        try:
            return (await http.get("/readyz")).status_code == 200
        except httpx.HTTPError:
            return False


async def review(api: httpx.AsyncClient, follower: httpx.AsyncClient, number: int) -> str:
    """Start a review through one API and follow it through the other, until it ends."""
    headers = token(f"requester-{number % 10}")
    started = await api.post("/v1/workflows/compliance-documentation/runs", json={"input": dict(SPEC.sample_input)},
                             headers=headers)
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    while True:
        run = (await follower.get(f"/v1/runs/{run_id}", params={"wait": 30}, headers=headers)).json()
        if run["status"] not in ("running", "waiting_for_approval"):
            assert run["status"] == "completed", run
            return run_id


async def test_two_apis_and_two_workers_share_storage_and_limits_and_survive_a_killed_worker(monkeypatch, tmp_path):
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)  # for the test's own boto3 client
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=temporal_binary(),
                                                search_attributes=search_attributes.ALL,
                                                dev_server_log_level="error")
    async with AsyncExitStack() as stack:
        stack.push_async_callback(env.shutdown)
        redis_url = stack.enter_context(running_redis(free_port(), tmp_path / "redis"))
        s3_url = stack.enter_context(running_moto())
        bucket = new_bucket(s3_url)
        model = await stack.enter_async_context(serve_fake_openai())
        model.respond = lambda _: answer(CLEAR)
        shared = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("STEWARD_", "TEMPORAL_"))}, **CREDENTIALS,
            "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
            "STEWARD_JWT_SECRET": SECRET, "STEWARD_ENCRYPTION_KEYS": new_key_entry(),
            "STEWARD_FONT_CACHE": os.environ["STEWARD_FONT_CACHE"],  # fonts are the same on every host
            "STEWARD_OBJECT_STORE": "s3", "STEWARD_S3_BUCKET": bucket, "STEWARD_S3_ENDPOINT_URL": s3_url,
            "STEWARD_REDIS_URL": redis_url, "STEWARD_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT),
            "STEWARD_AUDIT_SIGNING_KEY_FILE": str(tmp_path / "secrets" / "audit-signing-key"),
            "STEWARD_LLM_PROVIDER": "openai", "STEWARD_LLM_BASE_URL": model.url, "STEWARD_LLM_MODEL": "gpt-4o-mini",
            "STEWARD_LLM_API_KEY": "sk-many-hosts-test", "STEWARD_CPU_WORKERS": "1", "STEWARD_WORKER_GRACE_S": "2",
            "STEWARD_LOG_LEVEL": "warning",
        }
        apis, workers = [], []
        for host in ("a", "b"):
            data = tmp_path / f"host-{host}"
            data.mkdir()
            port = free_port()
            await stack.enter_async_context(process("api", {**shared, "STEWARD_DATA_DIR": str(data),
                                                            "STEWARD_API_PORT": str(port)}, data / "api.log"))
            workers.append(await stack.enter_async_context(process(
                "worker", {**shared, "STEWARD_DATA_DIR": str(data), "STEWARD_WORKER_METRICS_PORT": str(free_port())},
                data / "worker.log")))
            apis.append(await stack.enter_async_context(httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                                                          timeout=60)))
        for api in apis:
            await eventually(lambda api=api: ready(str(api.base_url)), "both APIs to be ready", deadline_s=120)

        done: list[str] = []
        limit = asyncio.Semaphore(IN_FLIGHT)

        async def one(number: int) -> None:
            async with limit:
                done.append(await review(apis[number % 2], apis[(number + 1) % 2], number))
                if len(done) == KILL_AFTER:
                    os.killpg(workers[0].pid, signal.SIGKILL)  # the worker and its CPU pool, mid-flight

        started = asyncio.get_running_loop().time()
        await asyncio.gather(*(one(number) for number in range(RUNS)))
        took = asyncio.get_running_loop().time() - started
        print(f"{RUNS} reviews through 2 APIs and 2 workers, one killed: {took:.1f} s")
        assert len(set(done)) == RUNS and await workers[0].wait() == -signal.SIGKILL

        # Every report, from either API: the bucket is what they share.
        async def downloadable(run_id: str) -> None:
            async with limit:
                run = (await apis[0].get(f"/v1/runs/{run_id}", headers=token("auditor"))).json()
                for api in apis:
                    pdf = await api.get(f"/v1/runs/{run_id}/artifacts/compliance-report.pdf",
                                        headers=token("auditor"))
                    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
                    assert pdf.headers["x-content-sha256"] == run["result"]["report"]["sha256"]

        await asyncio.gather(*(downloadable(run_id) for run_id in done))

        # Every model call either worker made, and none twice or lost: the shared ledger's total is
        # what the endpoint was asked (a call whose worker died is paid for, and counted, too).
        spent = await RedisSpendLedger(redis_url).spent("acme", datetime.now(UTC).date())
        assert len(model.requests) >= RUNS
        assert spent == pytest.approx(len(model.requests) * CALL_COST_USD, rel=1e-9)

        # One rate limit for a principal, whichever API it calls.
        burst = token("burst")
        answered = [(await apis[n % 2].get("/v1/workflows", headers=burst)).status_code for n in range(RATE_LIMIT + 2)]
        assert answered.count(200) == RATE_LIMIT and answered[RATE_LIMIT:] == [429, 429]

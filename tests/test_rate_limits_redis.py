"""Cluster-wide limits: API processes and LLM workers that share a real Redis share one budget; without
Redis each process has its own; a Redis that is down leaves the API serving, limited per process.

Every budget here is a minute long and every test counts within its first seconds, so what is
allowed and what is refused follows from the counts alone.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest
import redis
from pydantic import SecretStr
from temporalio.client import Client

from activities.llm.ratelimit import ModelBudget
from steward.rate_limits import REDIS_KEY_PREFIX, RateLimits
from steward.settings import Settings
from tests.support import DEADLINE_S, UNDER_CI, free_port, missing, serve_api, watch

REDIS_SERVER = shutil.which("redis-server")
REDIS_MISSING = ("redis-server is not installed: tests/install-debian.sh redis-server redis-server "
                 "'Redis-backed rate-limit tests' (make install-test runs it)")
# Under CI the tests run regardless, and running_redis fails them: make test installs Redis there.
needs_redis = pytest.mark.skipif(REDIS_SERVER is None and not UNDER_CI, reason=REDIS_MISSING)
# One password for every server this module starts; the log scan proves it is never logged.
PASSWORD = secrets.token_urlsafe(24)
watch("the Redis password", PASSWORD)


def redis_url(port: int) -> str:
    return f"redis://:{PASSWORD}@127.0.0.1:{port}/0"


@contextmanager
def running_redis(port: int, directory: Path) -> Iterator[str]:
    """A real redis-server on 127.0.0.1:`port`, without persistence, until the block ends; yields its URL."""
    if REDIS_SERVER is None:
        missing(REDIS_MISSING)
    directory.mkdir(parents=True, exist_ok=True)
    output = (directory / "redis.log").open("w")
    server = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(directory), "--requirepass", PASSWORD],
        stdout=output, stderr=subprocess.STDOUT,
    )
    try:
        probe = redis.Redis(port=port, password=PASSWORD, socket_connect_timeout=1, socket_timeout=1)
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                probe.ping()
                break
            except redis.ConnectionError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"redis-server did not start: {(directory / 'redis.log').read_text()}")
                time.sleep(0.02)
        probe.close()
        yield redis_url(port)
    finally:
        server.terminate()
        server.wait(timeout=DEADLINE_S)
        output.close()


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_redis(free_port(), tmp_path_factory.mktemp("redis")) as url:
        yield url


@asynccontextmanager
async def two_apis(settings: Settings, client: Client) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Two API processes' worth of app: each its own create_app, uvicorn server and port."""
    first, second = (settings.model_copy(update={"api_port": free_port()}) for _ in range(2))
    async with (serve_api(first, client) as first_url, serve_api(second, client) as second_url,
                httpx.AsyncClient(base_url=first_url, timeout=30) as first_http,
                httpx.AsyncClient(base_url=second_url, timeout=30) as second_http):
        yield first_http, second_http


def assert_rate_limited(response: httpx.Response, per_minute: int) -> None:
    assert response.status_code == 429, response.text
    # Room again when the first request leaves the window: a minute after it, seconds ago.
    assert 55 <= int(response.headers["Retry-After"]) <= 60
    error = response.json()["error"]
    assert error["code"] == "rate_limited" and f"{per_minute} requests a minute" in error["message"]


# --- The API ---


@needs_redis
async def test_api_processes_sharing_redis_share_one_budget(settings, client, shared_redis, auth):
    shared = settings.model_copy(update={"rate_limit_per_minute": 5, "redis_url": SecretStr(shared_redis)})
    headers = auth()
    async with two_apis(shared, client) as (first, second):
        # All at once, half to each: exactly five pass, wherever they land (a hit is one Lua script).
        answers = await asyncio.gather(*(http.get("/v1/workflows", headers=headers) for http in [first, second] * 6))
        assert sorted(answer.status_code for answer in answers) == [200] * 5 + [429] * 7
        for http in (first, second):
            assert_rate_limited(await http.get("/v1/runs", headers=headers), per_minute=5)
        assert (await second.get("/v1/workflows", headers=auth(sub="bob"))).status_code == 200


async def test_api_processes_without_redis_each_have_their_own_budget(settings, client, auth):
    own = settings.model_copy(update={"rate_limit_per_minute": 3, "redis_url": None})
    headers = auth()
    async with two_apis(own, client) as (first, second):
        assert [(await first.get("/v1/workflows", headers=headers)).status_code for _ in range(3)] == [200] * 3
        assert_rate_limited(await first.get("/v1/workflows", headers=headers), per_minute=3)
        assert [(await second.get("/v1/workflows", headers=headers)).status_code for _ in range(3)] == [200] * 3
        assert_rate_limited(await second.get("/v1/workflows", headers=headers), per_minute=3)


async def test_api_keeps_serving_while_redis_is_down_and_warns_once(settings, client, auth, log_lines):
    nobody_listens = redis_url(free_port())
    down = settings.model_copy(update={"api_port": free_port(), "rate_limit_per_minute": 3,
                                       "redis_url": SecretStr(nobody_listens)})
    headers = auth()
    async with serve_api(down, client) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        assert [(await http.get("/v1/workflows", headers=headers)).status_code for _ in range(3)] == [200] * 3
        # Open, but not unlimited: each process counts on its own until Redis answers.
        assert_rate_limited(await http.get("/v1/workflows", headers=headers), per_minute=3)
    warnings = [e for e in log_lines.events() if e["event"].startswith("redis unreachable")]
    assert len(warnings) == 1, warnings  # one warning, not one per request
    assert warnings[0]["level"] == "warning" and warnings[0]["error"].startswith("ConnectionError")


# --- The limiter itself ---


@needs_redis
async def test_counts_move_back_to_redis_when_it_answers_again(tmp_path, log_lines):
    port = free_port()
    limits = RateLimits(redis_url(port), retry_s=0)  # ask Redis on every call, to see it come back
    budget = ModelBudget(f"model-{uuid.uuid4().hex}", 100, 1000, limits)
    try:
        assert await budget.acquire(10) == 0  # down: counted in this process
        assert await budget.acquire(10) == 0
        with running_redis(port, tmp_path / "redis"):
            assert await budget.acquire(10) == 0
            keys = redis.Redis(port=port, password=PASSWORD).keys(f"{REDIS_KEY_PREFIX}:llm-tokens/{budget.model}/*")
            assert len(keys) == 1  # counted in Redis again
    finally:
        await limits.aclose()
    warnings = [e for e in log_lines.events() if e["event"].startswith("redis unreachable")]
    assert len(warnings) == 1  # two failed calls, one warning: at most one a minute


def test_a_redis_url_of_another_scheme_stops_start_up_naming_the_variable_not_the_password():
    with pytest.raises(ValueError) as refused:
        RateLimits.from_settings(Settings(redis_url=SecretStr(f"http://:{PASSWORD}@127.0.0.1:6379/0")))
    assert str(refused.value).startswith("STEWARD_REDIS_URL: ") and PASSWORD not in str(refused.value)


# --- The LLM budgets of several workers ---


class Waited(Exception):
    pass


async def stop_at_the_wait(seconds: float) -> None:
    raise Waited(seconds)


@asynccontextmanager
async def two_workers(url: str, requests: int, tokens: int) -> AsyncIterator[tuple[ModelBudget, ModelBudget]]:
    """The budget of one model in two workers: each its own limiter and connections to Redis."""
    model = f"model-{uuid.uuid4().hex}"
    first, second = RateLimits(url), RateLimits(url)
    try:
        yield (ModelBudget(model, requests, tokens, first, sleep=stop_at_the_wait),
               ModelBudget(model, requests, tokens, second, sleep=stop_at_the_wait))
    finally:
        await first.aclose()
        await second.aclose()


@needs_redis
async def test_workers_sharing_redis_share_one_token_budget(shared_redis):
    async with two_workers(shared_redis, requests=100, tokens=1000) as (first, second):
        # 300 tokens each, two calls per worker, all at once: three fit the 1000, the fourth waits.
        calls = await asyncio.gather(*(budget.acquire(300) for budget in (first, second, first, second)),
                                     return_exceptions=True)
        assert sorted(type(call).__name__ for call in calls) == ["Waited", "float", "float", "float"]
        assert await second.acquire(100) == 0  # 900 + 100: the last of the minute
        for budget in (first, second):
            with pytest.raises(Waited) as waited:
                await budget.acquire(1)
            assert waited.value.args[0] == pytest.approx(60, abs=5)


@needs_redis
async def test_workers_sharing_redis_share_one_request_budget(shared_redis):
    async with two_workers(shared_redis, requests=2, tokens=100_000) as (first, second):
        assert await first.acquire(10) == 0
        assert await second.acquire(10) == 0
        for budget in (first, second):
            with pytest.raises(Waited):
                await budget.acquire(10)


@needs_redis
async def test_tokens_used_beyond_the_estimate_count_for_every_worker(shared_redis):
    async with two_workers(shared_redis, requests=100, tokens=1000) as (first, second):
        await first.acquire(100)
        await first.settle(estimated_tokens=100, actual_tokens=900)
        assert await second.acquire(100) == 0  # 900 + 100
        with pytest.raises(Waited):
            await second.acquire(1)

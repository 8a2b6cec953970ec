"""Abuse limits: a request rate per principal (429 + Retry-After), request bodies (413), page sizes (422)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import pytest
from temporalio.client import Client

from api.errors import ApiError
from api.limits import BodySizeLimit, PrincipalRateLimit, limit_key, retry_after_s
from steward.identity import Principal
from steward.rate_limits import RateLimits
from steward.settings import Settings
from tests.support import free_port, serve_api


LimitedApi = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


# --- The limiter's answers: moving windows of a minute, counted in memory ---


async def test_a_burst_of_the_limit_passes_and_the_next_request_is_refused_for_a_window():
    limit = PrincipalRateLimit(RateLimits(), 60)
    principal = Principal(sub="alice", roles=("operator",), tenant="acme")
    for _ in range(60):
        await limit(principal)
    with pytest.raises(ApiError) as refused:
        await limit(principal)
    assert (refused.value.status, refused.value.code) == (429, "rate_limited")
    # Room comes back when the oldest request leaves the window: a minute after the burst began.
    assert refused.value.headers == {"Retry-After": "60"}
    assert refused.value.details == {"limit_per_minute": 60, "retry_after_s": 60}


async def test_a_refused_request_takes_nothing_from_the_budget():
    limits = RateLimits()
    limit = PrincipalRateLimit(limits, 2)
    principal = Principal(sub="alice", roles=("operator",), tenant="acme")
    await limit(principal)
    await limit(principal)
    for _ in range(5):
        with pytest.raises(ApiError):
            await limit(principal)
    # Had the refusals counted, the window would hold 7 requests: 5 past the limit.
    assert (await limits.window(limit.item, limit_key("acme", "alice"))).remaining == 0


async def test_each_principal_has_its_own_budget():
    limit = PrincipalRateLimit(RateLimits(), 2)
    alice, bob = (Principal(sub=sub, roles=("operator",), tenant="acme") for sub in ("alice", "bob"))
    await limit(alice)
    await limit(alice)
    with pytest.raises(ApiError):
        await limit(alice)
    await limit(bob)


@pytest.mark.parametrize(("seconds_left", "retry_after"), [(0.2, 1), (8.57, 9), (59.01, 60), (-3.0, 1)])
def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one(seconds_left, retry_after):
    assert retry_after_s(1000.0 + seconds_left, now=1000.0) == retry_after


async def test_the_same_sub_in_another_tenant_is_another_principal():
    limit = PrincipalRateLimit(RateLimits(), 1)
    await limit(Principal(sub="alice", roles=("operator",), tenant="acme"))
    await limit(Principal(sub="alice", roles=("operator",), tenant="globex"))
    with pytest.raises(ApiError):
        await limit(Principal(sub="alice", roles=("admin",), tenant="acme"))


# --- Over real HTTP ---


@pytest.fixture
def limited_api(settings: Settings, client: Client, worker: None) -> LimitedApi:
    """`async with limited_api(rate_limit_per_minute=3) as http`: an app of its own with those limits."""

    @asynccontextmanager
    async def serve(**limits: int | str) -> AsyncIterator[httpx.AsyncClient]:
        own = settings.model_copy(update={"api_port": free_port(), **limits})
        async with serve_api(own, client) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
            yield http

    return serve


async def test_request_over_the_rate_limit_is_429_with_retry_after(limited_api, auth):
    headers = auth()
    async with limited_api(rate_limit_per_minute=3) as http:
        for path in ("/v1/workflows", "/v1/runs", "/v1/workflows"):  # one budget across routers
            assert (await http.get(path, headers=headers)).status_code == 200
        refused = await http.get("/v1/approvals", headers=headers)
        assert refused.status_code == 429
        # 3 a minute: room again when the first of the three leaves the window, a minute after it came.
        assert 55 <= int(refused.headers["Retry-After"]) <= 60
        error = refused.json()["error"]
        assert error["code"] == "rate_limited" and "3 requests a minute" in error["message"]

        assert (await http.get("/v1/workflows", headers=auth(sub="bob"))).status_code == 200
        for path in ("/healthz", "/inbox", "/healthz", "/inbox"):
            assert (await http.get(path)).status_code == 200, path
        assert (await http.get("/v1/workflows")).status_code == 401  # identity is checked first


def fingerprint_request(text: str) -> dict:
    return {"input": {"documents": [{"name": "a.txt", "text": text}]}}


async def start(http: httpx.AsyncClient, headers: dict[str, str], **kwargs) -> httpx.Response:
    return await http.post("/v1/workflows/document-fingerprint/runs", headers=headers, **kwargs)


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "payload_too_large"
    assert "2048 bytes" in error["message"] and "STEWARD_MAX_BODY_BYTES" in error["message"]


async def test_body_declared_over_the_limit_is_413_and_never_reaches_the_route(limited_api, auth):
    headers = {**auth(), "Idempotency-Key": uuid.uuid4().hex}
    async with limited_api(max_body_bytes=2048) as http:
        refused = await start(http, headers, json=fingerprint_request("x" * 4096))
        assert "content-length" in refused.request.headers
        assert_too_large(refused)

        # Had the route run, the key would belong to the big request, and another body would be 409.
        accepted = await start(http, headers, json=fingerprint_request("small"))
        assert accepted.status_code == 202, accepted.text


async def test_chunked_body_over_the_limit_is_413_and_never_reaches_the_route(limited_api, auth):
    headers = {**auth(), "Idempotency-Key": uuid.uuid4().hex, "Content-Type": "application/json"}

    async def chunks(body: dict) -> AsyncIterator[bytes]:
        data = json.dumps(body).encode()
        for at in range(0, len(data), 512):
            yield data[at:at + 512]

    async with limited_api(max_body_bytes=2048) as http:
        refused = await start(http, headers, content=chunks(fingerprint_request("x" * 8192)))
        assert refused.request.headers["transfer-encoding"] == "chunked"
        assert_too_large(refused)

        accepted = await start(http, headers, content=chunks(fingerprint_request("y" * 1024)))
        assert accepted.status_code == 202, accepted.text  # a chunked body under the limit is read whole


async def test_declared_length_over_the_limit_is_refused_before_reading_anything():
    async def route(scope, receive, send):
        raise AssertionError("the app must not run")

    async def receive():
        raise AssertionError("the body must not be read")

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-length", b"1025")]}
    await BodySizeLimit(route, max_bytes=1024)(scope, receive, send)
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"]["code"] == "payload_too_large"


async def test_streamed_body_stops_being_read_at_the_chunk_that_passes_the_limit():
    reads = 0

    async def receive():
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * 512, "more_body": reads < 10}

    async def route(scope, receive, send):
        while (await receive())["more_body"]:
            pass
        raise AssertionError("the whole body was read")

    sent = []

    async def send(message):
        sent.append(message)

    await BodySizeLimit(route, max_bytes=1024)({"type": "http", "method": "POST", "path": "/", "headers": []},
                                               receive, send)
    assert reads == 3  # 1536 bytes: the first read past 1024
    assert sent[0]["status"] == 413


@pytest.mark.parametrize("path", ["/v1/runs", "/v1/approvals"])
async def test_page_size_over_100_is_422(http, auth, path):
    headers = auth(roles=("operator", "approver"))
    response = await http.get(path, params={"page_size": 101}, headers=headers)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "query.page_size"
    assert (await http.get(path, params={"page_size": 100}, headers=headers)).status_code == 200


async def test_activation_links_are_limited_per_client_address(limited_api):
    # No bearer token to count against: a guesser is counted by address, across both routes.
    async with limited_api(rate_limit_per_minute=3) as http:
        guesses = [await http.post("/v1/activations/not-a-token"), await http.get("/activate/not-a-token"),
                   await http.post("/v1/activations/not-a-token")]
        assert [g.status_code for g in guesses] == [404, 200, 404]
        refused = await http.post("/v1/activations/not-a-token")
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
        assert refused.headers["Retry-After"]


@pytest.mark.parametrize("trusted", [True, False], ids=["behind-a-trusted-proxy", "from-an-untrusted-peer"])
async def test_the_client_address_comes_from_x_forwarded_for_only_when_the_proxy_is_trusted(limited_api, trusted):
    """Behind the compose file's reverse proxy every request arrives from the proxy: trusted, the
    proxy's X-Forwarded-For tells clients apart; untrusted, a client cannot pick its own address."""
    async with limited_api(rate_limit_per_minute=2, forwarded_allow_ips="127.0.0.1" if trusted else "192.0.2.1") as http:
        first = {"X-Forwarded-For": "203.0.113.7"}
        for _ in range(2):
            assert (await http.post("/v1/activations/not-a-token", headers=first)).status_code == 404
        assert (await http.post("/v1/activations/not-a-token", headers=first)).status_code == 429
        other = await http.post("/v1/activations/not-a-token", headers={"X-Forwarded-For": "203.0.113.8"})
        assert other.status_code == (404 if trusted else 429)

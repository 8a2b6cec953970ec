"""When Temporal is unreachable the API says so: 503 with Retry-After, never a 500 or a hang."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.client import Client

from tests.conftest import TEST_DATA_CONVERTER
from tests.incident_fixtures import payload
from tests.support import free_port, serve_api


@pytest.fixture
async def api_without_temporal(settings) -> AsyncIterator[httpx.AsyncClient]:
    # A port nobody listens on: the lazy client's first call fails to connect.
    dead = await Client.connect(f"127.0.0.1:{free_port()}", lazy=True, data_converter=TEST_DATA_CONVERTER)
    own = settings.model_copy(update={"api_port": free_port()})
    async with serve_api(own, dead) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        yield http


async def test_routes_answer_503_with_retry_after_when_temporal_is_down(api_without_temporal, auth):
    docs = {"documents": [{"name": "a.txt", "text": "x"}]}
    for method, path, body in [("GET", "/v1/runs/some-run", None), ("GET", "/v1/runs", None),
                               ("POST", "/v1/workflows/document-fingerprint/runs", {"input": docs})]:
        response = await api_without_temporal.request(method, path, json=body, headers=auth())
        assert response.status_code == 503, (path, response.text)
        assert response.headers["retry-after"] == "5"
        assert response.json()["error"]["code"] == "temporal_unavailable"


async def test_alertmanager_is_told_to_retry_only_when_temporal_is_down(api_without_temporal, auth):
    # Alertmanager retries a notification on 5xx alone, so a 503 here is what keeps an alert from
    # being lost while Temporal is away; and it is the only 5xx the hook answers.
    for name in ("firing", "resolved"):
        response = await api_without_temporal.post("/v1/hooks/alertmanager", json=payload(name, "g-down"),
                                                   headers=auth(roles=("operator",)))
        assert response.status_code == 503, (name, response.text)
        assert response.json()["error"]["code"] == "temporal_unavailable"


async def test_readiness_is_503_while_liveness_stays_200(api_without_temporal):
    assert (await api_without_temporal.get("/healthz")).status_code == 200
    ready = await api_without_temporal.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["error"]["code"] == "unavailable"

"""The Temporal UI under the API's origin (/ui/, api/routes/ui.py), beside /codec.

The journey runs in a real browser against the dev server `steward up` starts, with the very
flags it passes (Supervisor(...).server.argv): an operator signs in on /codec, opens a run in the
UI under the API and reads its input decrypted, with no UI setting changed; signed out, the same
page shows the ciphertext. The proxy's refusals are proved against a stand-in UI that echoes what
it was sent.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, Response
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.client import Client

from steward.cli.supervisor import Supervisor
from steward.devserver import free_ports
from steward.settings import Settings
from tests.conftest import TEST_DATA_CONVERTER, TEST_ENCRYPTION_KEYS, TEST_SECRET, test_interceptors
from tests.support import eventually, serve_api, serve_asgi

pytest_plugins = ["tests.browser"]

# The UI's first page loads about 150 scripts through the proxy: seconds on a busy 2-core machine.
WAIT_MS = 60_000


@asynccontextmanager
async def embedded_temporal(settings: Settings, log: Path) -> AsyncIterator[Client]:
    """The dev server as `steward up` runs it, until its UI answers; then a client of it."""
    command = Supervisor(settings).server.argv
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(*command, stdout=output, stderr=output)
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            async def ui_answers() -> bool:
                try:
                    url = f"http://127.0.0.1:{settings.ui_port}/api/v1/namespaces/{settings.temporal_namespace}"
                    return (await http.get(url)).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(ui_answers, "the embedded Temporal UI")
        yield await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace,
                                   data_converter=TEST_DATA_CONVERTER, interceptors=test_interceptors())
    finally:
        process.terminate()
        await process.wait()


async def ciphertext_of_input(client: Client, run_id: str) -> str:
    """The start event's input as the server holds it: the bytes the UI shows without the codec."""
    async for event in client.get_workflow_handle(run_id).fetch_history_events():
        payload = event.workflow_execution_started_event_attributes.input.payloads[0]
        return base64.b64encode(payload.data).decode()
    raise AssertionError(f"run {run_id} has no history")


async def sign_in_on_codec_page(page: Page, api: str, token: str) -> None:
    await page.goto(f"{api}/codec")
    await page.get_by_label("Operator token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_text("Signed in as olga").wait_for(timeout=WAIT_MS)


async def test_a_signed_in_operator_reads_decrypted_input_in_the_ui_under_the_api_and_ciphertext_once_signed_out(
        page: Page, settings: Settings, auth, tmp_path: Path):
    temporal_port, ui_port, api_port = free_ports(3)
    own = settings.model_copy(update={"data_dir": tmp_path, "temporal_port": temporal_port, "ui_port": ui_port,
                                      "api_port": api_port})
    marker = f"ui-proof-{uuid.uuid4().hex[:12]}"
    operator = auth(sub="olga", roles=("operator",))
    async with embedded_temporal(own, tmp_path / "temporal.log") as client, serve_api(own, client) as api:
        async with httpx.AsyncClient(base_url=api, timeout=30) as http:
            started = await http.post("/v1/workflows/test-gated/runs", headers=operator, json={"input": {
                "started_file": str(tmp_path / marker), "release_file": str(tmp_path / "release")}})
        assert started.status_code == 202, started.text
        run_id = started.json()["id"]
        ciphertext = (await ciphertext_of_input(client, run_id))[:32]
        codec_answers: list[int] = []

        def record_codec_answer(response: Response) -> None:
            if response.url.startswith(f"{api}/codec/decode"):
                codec_answers.append(response.status)

        page.on("response", record_codec_answer)
        await sign_in_on_codec_page(page, api, operator["Authorization"].removeprefix("Bearer "))
        # The UI as the dev server configured it: no codec setting of the browser's own.
        await page.goto(f"{api}/ui/namespaces/{own.temporal_namespace}/workflows/{run_id}")
        await page.get_by_text(marker).first.wait_for(timeout=WAIT_MS)
        assert codec_answers and set(codec_answers) == {200}

        # Signed out in another tab, as an operator would, then the run's page reloaded.
        codec_page = await page.context.new_page()
        await codec_page.goto(f"{api}/codec")
        await codec_page.get_by_role("button", name="Sign out").click()
        await codec_page.get_by_text("Signed out").wait_for(timeout=WAIT_MS)
        codec_answers.clear()
        await page.reload()
        await page.get_by_text(ciphertext).first.wait_for(timeout=WAIT_MS)
        assert marker not in await page.content()
        assert codec_answers and set(codec_answers) == {401}
        # The run's page long-polls its history through the API: leave it before the API stops.
        await page.goto("about:blank")


async def echo(request: Request) -> JSONResponse:
    """A stand-in for the UI server: what reached it."""
    return JSONResponse({"path": request.scope["raw_path"].decode(), "query": request.url.query,
                         "headers": dict(request.headers), "cookies": dict(request.cookies)},
                        headers={"set-cookie": "_csrf=abc; Path=/; SameSite=Strict"})


@pytest.fixture
async def api_before_a_stand_in_ui(settings: Settings, client: Client) -> AsyncIterator[str]:
    ui_port, api_port = free_ports(2)
    own = settings.model_copy(update={"ui_port": ui_port, "api_port": api_port})
    async with serve_asgi(Starlette(routes=[Route("/{path:path}", echo, methods=["GET", "POST"])]), ui_port), \
            serve_api(own, client) as api:
        yield api


async def test_the_ui_is_sent_its_own_csrf_cookie_and_never_stewards_credentials(api_before_a_stand_in_ui, auth):
    async with httpx.AsyncClient(base_url=api_before_a_stand_in_ui) as http:
        response = await http.post("/ui/api/v1/namespaces/default/workflows/a%2Fb/terminate?x=1", json={}, headers={
            **auth(roles=("operator",)), "cookie": "steward_codec=secret-token; _csrf=abc", "x-csrf-token": "abc"})
    assert response.status_code == 200, response.text
    seen = response.json()
    assert seen["path"] == "/ui/api/v1/namespaces/default/workflows/a%2Fb/terminate" and seen["query"] == "x=1"
    assert seen["cookies"] == {"_csrf": "abc"} and seen["headers"]["x-csrf-token"] == "abc"
    assert "authorization" not in seen["headers"] and "secret-token" not in str(seen["headers"])
    # The UI's cookie is kept to the UI's path on the API's origin.
    assert response.headers["set-cookie"].endswith("Path=/ui")
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_the_ui_is_refused_to_other_machines_and_to_other_host_names(api_before_a_stand_in_ui):
    async with httpx.AsyncClient(base_url=api_before_a_stand_in_ui) as http:
        # The API believes X-Forwarded-For from loopback (a reverse proxy on this host): a client elsewhere.
        remote = await http.get("/ui/", headers={"x-forwarded-for": "203.0.113.9"})
        rebound = await http.get("/ui/", headers={"host": "rebound.example"})
        local = await http.get("/ui/")
    assert remote.status_code == 403 and remote.json()["error"]["code"] == "ui_local_only"
    assert rebound.status_code == 403 and rebound.json()["error"]["code"] == "ui_local_only"
    assert local.status_code == 200


async def test_the_ui_path_says_so_when_temporal_is_not_embedded(client, monkeypatch, tmp_path: Path):
    monkeypatch.setenv("TEMPORAL_ADDRESS", "temporal.internal:7233")
    external = Settings(data_dir=tmp_path, api_port=free_ports(1)[0], jwt_secret=TEST_SECRET,
                        encryption_keys=TEST_ENCRYPTION_KEYS)
    assert not external.uses_embedded_temporal
    async with serve_api(external, client) as api, httpx.AsyncClient(base_url=api) as http:
        response = await http.get("/ui/namespaces/default/workflows")
    assert response.status_code == 404 and response.json()["error"]["code"] == "ui_not_embedded"

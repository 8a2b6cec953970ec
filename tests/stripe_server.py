"""A real Stripe emulator for the billing connector's tests: localstripe, in a process of its own.

localstripe is GPL, so it is only ever run (its console script), never imported. It keeps its
state in memory and mirrors it to one fixed file, /tmp/localstripe.pickle, which `--from-scratch`
stops it from reading back: one instance per test session. At start the fixture creates the
Stripe Plans `steward.settings.DEFAULT_BILLING_PLANS` names, so the default plan mapping works.

Test modules use it with `pytest_plugins = ["tests.stripe_server"]` and the `stripe_server` fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from steward.settings import DEFAULT_BILLING_PLANS, Settings
from tests.support import eventually, free_port, watch

# localstripe accepts any secret key that starts with sk_ and is longer than five characters.
API_KEY = "sk_test_steward_localstripe_key"
# Monthly prices in cents, so each default plan exists on the server with an amount to bill.
PLAN_AMOUNTS = {"starter": 1900, "team": 4900, "business": 9900, "enterprise": 49900}
STOP_GRACE_S = 10.0  # how long localstripe gets to exit after SIGTERM before it is killed


@dataclass
class StripeServer:
    url: str
    api_key: str

    def settings(self, base: Settings) -> Settings:
        """`base` with the Stripe connector pointed at this server."""
        return base.model_copy(update={
            "billing_connector": "stripe",
            "stripe_api_base": self.url,
            "stripe_api_key": SecretStr(self.api_key),
            "stripe_api_key_file": None,
        })

    async def customers(self, onboarding_id: str) -> list[dict]:
        """Every customer whose metadata names this onboarding, as the server holds them."""
        customers = await self._all("/v1/customers")
        return [c for c in customers if c["metadata"].get("steward_onboarding_id") == onboarding_id]

    async def subscriptions(self, onboarding_id: str) -> list[dict]:
        """Every subscription, in any status, of this onboarding's customers."""
        found: list[dict] = []
        for customer in await self.customers(onboarding_id):
            found += await self._all("/v1/subscriptions", customer=customer["id"], status="all")
        return found

    async def _all(self, path: str, **params: str) -> list[dict]:
        """Every page of a list."""
        items: list[dict] = []
        async with self._http() as http:
            while True:
                page = {"limit": "100", **params, **({"starting_after": items[-1]["id"]} if items else {})}
                response = await http.get(path, params=page)
                response.raise_for_status()
                body = response.json()
                items += body["data"]
                if not body["has_more"]:
                    return items

    def _http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, auth=(self.api_key, ""), timeout=30)


async def create_plans(server: StripeServer) -> None:
    async with server._http() as http:
        response = await http.post("/v1/products", data={"name": "Steward", "type": "service"})
        response.raise_for_status()
        product = response.json()["id"]
        for plan, plan_id in DEFAULT_BILLING_PLANS.items():
            response = await http.post("/v1/plans", data={
                "id": plan_id, "product": product, "nickname": plan,
                "amount": str(PLAN_AMOUNTS[plan]), "currency": "eur", "interval": "month",
            })
            response.raise_for_status()


@pytest.fixture(scope="session")
async def stripe_server() -> AsyncIterator[StripeServer]:
    watch("the test Stripe key", API_KEY)
    port = free_port()
    server = StripeServer(url=f"http://127.0.0.1:{port}", api_key=API_KEY)
    with tempfile.TemporaryDirectory(prefix="localstripe-") as directory:
        log_path = Path(directory) / "localstripe.log"
        # Its access log (URLs with customers' emails in them) goes to a file, not to any logger.
        with log_path.open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "localstripe"), "--port", str(port), "--from-scratch",
                stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file,
            )
        try:
            await eventually(lambda: _answers(server, process, log_path), "localstripe to answer")
            await create_plans(server)
            yield server
        finally:
            await _stop(process)


async def _answers(server: StripeServer, process: asyncio.subprocess.Process, log_path: Path) -> bool:
    if process.returncode is not None:
        raise AssertionError(f"localstripe exited ({process.returncode}) at start:\n{log_path.read_text()[-2000:]}")
    try:
        async with server._http() as http:
            return (await http.get("/v1/plans")).status_code == 200
    except httpx.TransportError:
        return False


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()

"""A real SCIM 2.0 server for tests: scim2-server's own command, as a subprocess on a free port.

scim2-server keeps users in memory and answers RFC 7644 as written (filters, PATCH, ETags,
uniqueness of userName with a 409), so the SCIM connector is tested against a server it did not
shape. Modules load the fixture with `pytest_plugins = ["tests.scim_server"]`; a test that needs a
server of its own (one without PATCH) uses `running_scim_server`.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from steward.settings import Settings
from tests.support import eventually, free_port, watch

SCIM2_SERVER = Path(sys.executable).parent / "scim2-server"
STOP_GRACE_S = 10.0


@dataclass
class ScimServer:
    url: str  # the SCIM base URL, …/v2
    token: str
    log_path: Path  # the server's own output (one line per request), to read when a test fails

    def settings(self, base: Settings) -> Settings:
        """`base` with the SCIM connector pointed at this server."""
        return base.model_copy(update={"identity_connector": "scim", "scim_url": self.url,
                                       "scim_token": SecretStr(self.token), "scim_token_file": None})

    async def users(self, onboarding_id: str) -> list[dict[str, Any]]:
        """The server's users whose externalId is `onboarding_id`, as it returns them over HTTP."""
        async with httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"},
                                     timeout=10) as http:
            response = await http.get("/Users", params={"filter": f"externalId eq {json.dumps(onboarding_id)}"})
        response.raise_for_status()
        return response.json().get("Resources", [])


@asynccontextmanager
async def running_scim_server(directory: Path, *, patch: bool = True) -> AsyncIterator[ScimServer]:
    """scim2-server on a free loopback port, with a fresh token; `patch=False` announces (and answers
    501 to) no PATCH. Stopped on exit, also when it never came up."""
    token = "scim-test-" + secrets.token_urlsafe(24)
    watch("the SCIM bearer token", token)
    port = free_port()
    command = [str(SCIM2_SERVER), "--hostname", "127.0.0.1", "--port", str(port), "--bearer-token", token]
    if not patch:
        config = directory / "service-provider-config.json"
        config.write_text(json.dumps({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": {"supported": False}, "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": True, "maxResults": 1000}, "changePassword": {"supported": False},
            "sort": {"supported": False}, "etag": {"supported": True},
        }))
        command += ["--service-provider-config", str(config)]
    log_path = directory / f"scim2-server-{port}.log"
    with log_path.open("w") as log_file:
        # Its own session, so stopping it reaches nothing else; output to a file, never a pipe nobody reads.
        process = await asyncio.create_subprocess_exec(*command, stdout=log_file, stderr=subprocess.STDOUT,
                                                       start_new_session=True)
    server = ScimServer(url=f"http://127.0.0.1:{port}/v2", token=token, log_path=log_path)
    try:
        async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"},
                                     timeout=5) as http:

            async def answering() -> bool:
                if process.returncode is not None:
                    raise AssertionError(f"scim2-server exited ({process.returncode}): {log_path.read_text()}")
                try:
                    return (await http.get("/ServiceProviderConfig")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(answering, "scim2-server to answer")
        yield server
    finally:
        await _stop(process)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGINT)  # its KeyboardInterrupt handler ends serve_forever cleanly
    try:
        await asyncio.wait_for(process.wait(), STOP_GRACE_S)
    except TimeoutError:
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


@pytest.fixture(scope="session")
async def scim_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ScimServer]:
    async with running_scim_server(tmp_path_factory.mktemp("scim")) as server:
        yield server

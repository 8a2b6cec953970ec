"""Helpers the tests share: free ports, polling with a generous deadline, run polling via the API."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import NoReturn, TypeVar

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp
from temporalio.client import Client

from api.app import KEEP_ALIVE_S, create_app, server_config
from steward.settings import Settings
from steward import runtime
from workers.worker import hosting, run_workers
from workflows.catalog import Catalog

T = TypeVar("T")

# Values no log line of the whole session may contain: secrets and test applicants' names.
# Tests register what they create with watch(); conftest's session fixture checks at the end.
WATCHED: dict[str, str] = {}


def watch(what: str, *values: str) -> None:
    """Register values that must never appear in a log line, under a label safe to print."""
    for value in values:
        if value:
            WATCHED[value] = what


def leaked(lines: list[str], watched: dict[str, str]) -> list[str]:
    """The labels of watched values found in log lines, as written or as decoded: the JSON
    renderer escapes non-ASCII (`Łukasz` is written `\\u0141ukasz`), so the written text alone
    would let an accented name through."""
    written = "\n".join(lines)
    decoded = "\n".join(_decoded(line) for line in lines)
    return sorted({what for value, what in watched.items() if value in written or value in decoded})


def _decoded(line: str) -> str:
    """A JSON log line's values (and keys) as plain text; the line itself if it is not JSON."""
    try:
        parsed = json.loads(line)
    except ValueError:
        return line
    return json.dumps(parsed, ensure_ascii=False)

TERMINAL_STATUSES = {"completed", "failed", "cancelled", "terminated", "timed_out"}
# Deadlines are for hangs, not for timing: a healthy run finishes in well under a second.
DEADLINE_S = 60.0


# `make test` installs every real server the suite starts (chromium, redis-server, promtool): in
# CI their absence is a broken setup, and a green run that skipped them would prove nothing.
UNDER_CI = os.environ.get("CI") == "true"


def missing(what: str) -> NoReturn:
    """A real component the test needs is not installed: skip here, fail under CI=true."""
    if UNDER_CI:
        pytest.fail(f"{what}; CI=true, where make test installs it, so a skip would hide a broken setup")
    pytest.skip(what)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str, deadline_s: float = DEADLINE_S) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def wait_for_run(http: httpx.AsyncClient, run_id: str, headers: dict[str, str]) -> dict:
    async def closed() -> dict | None:
        response = await http.get(f"/v1/runs/{run_id}", headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        return body if body["status"] in TERMINAL_STATUSES else None

    return await eventually(closed, f"run {run_id} to close")


@asynccontextmanager
async def serve_asgi(app: ASGIApp, port: int, *, lifespan: str = "off",
                     config: uvicorn.Config | None = None) -> AsyncIterator[str]:
    """Any ASGI app served by uvicorn over real HTTP on `port` (or as `config` says), in this
    process and event loop."""
    config = config or uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False,
                                      lifespan=lifespan, timeout_keep_alive=KEEP_ALIVE_S)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # startup failed: raise its error
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def serve_api(settings: Settings, client: Client) -> AsyncIterator[str]:
    """The real Steward app on settings.api_port, served as `steward api` serves it."""
    config = server_config(settings.model_copy(update={"api_host": "127.0.0.1"}), create_app(settings, client=client))
    async with serve_asgi(config.app, settings.api_port, config=config) as url:
        yield url


@asynccontextmanager
async def running_workers(client: Client, catalog: Catalog, *, platform: bool = True) -> AsyncIterator[None]:
    """Workers for every task queue of `catalog`, with the CPU pool, shut down gracefully on exit;
    with `platform`, also the platform's own (event delivery): one client serves those once.

    The pool's processes get this process's runtime settings (conftest's `settings` fixture).
    """
    stop = asyncio.Event()
    async with hosting(client, catalog, runtime.settings(), grace=timedelta(seconds=2),
                       platform=platform) as workers:
        task = asyncio.create_task(run_workers(workers, stop))
        try:
            yield
        finally:
            stop.set()
            await task

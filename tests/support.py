"""Helpers the tests share: free ports, polling with a generous deadline, run polling via the API."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx

T = TypeVar("T")
TERMINAL_STATUSES = {"completed", "failed", "cancelled", "terminated", "timed_out"}
# Deadlines are for hangs, not for timing: a healthy run finishes in well under a second.
DEADLINE_S = 60.0


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

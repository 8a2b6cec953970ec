"""`steward up` as a user runs it: a real subprocess on free ports with its own data dir."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx

from steward.devserver import free_ports
from steward.identity import Principal, issue_token
from tests.support import eventually, wait_for_run

REPO = Path(__file__).resolve().parents[1]
SECRET = "supervisor-test-secret-0123456789abcdef0123456789"


def steward_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    api, temporal, ui, metrics = free_ports(4)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "STEWARD_DATA_DIR": str(tmp_path / "data"),
        "STEWARD_API_PORT": str(api),
        "STEWARD_TEMPORAL_PORT": str(temporal),
        "STEWARD_UI_PORT": str(ui),
        "STEWARD_WORKER_METRICS_PORT": str(metrics),
        "STEWARD_JWT_SECRET": SECRET,
        "STEWARD_WORKFLOW_PACKAGES": json.dumps(["tests.workflow_fixtures"]),
        # A killed worker is restarted after the initial backoff; keep the grace short for tests.
        "STEWARD_WORKER_GRACE_S": "5",
    }
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_PROFILE", "TEMPORAL_CONFIG_FILE"):
        env.pop(name, None)
    env.update(overrides)
    return env


@dataclass
class Steward:
    process: asyncio.subprocess.Process
    log_path: Path
    banner_path: Path  # stderr: the banner for the person at the terminal
    api_url: str

    def events(self) -> list[dict]:
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def child_pids(self, child: str) -> list[int]:
        return [e["pid"] for e in self.events() if e.get("event") == "child started" and e.get("child") == child]

    def cpu_pool_pids(self) -> list[list[int]]:
        """The CPU pool processes of each worker started so far, as each logged them."""
        return [e["pids"] for e in self.events() if e.get("event") == "cpu pool started"]


@asynccontextmanager
async def running_steward(tmp_path: Path, **overrides: str) -> AsyncIterator[Steward]:
    env = steward_env(tmp_path, **overrides)
    log_path, banner_path = tmp_path / "stdout.jsonl", tmp_path / "stderr.txt"
    with log_path.open("w") as log_file, banner_path.open("w") as banner_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "steward", "up", env=env, stdout=log_file, stderr=banner_file,
            start_new_session=True,
        )
    steward = Steward(process, log_path, banner_path, f"http://127.0.0.1:{env['STEWARD_API_PORT']}")
    try:
        async with httpx.AsyncClient(base_url=steward.api_url, timeout=5) as http:
            await eventually(lambda: _ready(http), "steward up to answer /readyz", deadline_s=120)
        yield steward
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
                raise


async def _ready(http: httpx.AsyncClient) -> bool:
    try:
        return (await http.get("/readyz")).status_code == 200
    except httpx.HTTPError:
        return False


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def headers() -> dict[str, str]:
    token = issue_token(SECRET, Principal(sub="sam", roles=("operator",), tenant="acme"), timedelta(minutes=10))
    return {"Authorization": f"Bearer {token}"}


async def test_up_serves_runs_and_sigint_stops_every_child(tmp_path):
    async with running_steward(tmp_path) as steward:
        async with httpx.AsyncClient(base_url=steward.api_url, timeout=10) as http:
            docs = {"documents": [{"name": "a.txt", "text": "hello"}]}
            started = await http.post("/v1/workflows/document-fingerprint/runs", json={"input": docs}, headers=headers())
            run = await wait_for_run(http, started.json()["id"], headers())
            assert run["status"] == "completed"
        # Without an SMTP relay e-mail goes to a Maildir, and the banner says where.
        assert f"Maildir {tmp_path / 'data' / 'mail'}" in steward.banner_path.read_text()
        pids = {name: steward.child_pids(name) for name in ("temporal", "worker", "api")}
        assert all(len(p) == 1 for p in pids.values()), pids
        (pool,) = await eventually(lambda: _logged_pool(steward), "the worker's CPU pool to start")
        steward.process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(steward.process.wait(), 60) == 0

    for name, (pid,) in pids.items():
        assert not alive(pid), f"{name} (pid {pid}) outlived the supervisor"
    assert pool and not any(alive(pid) for pid in pool), "a CPU pool process outlived the worker"
    events = steward.events()  # every stdout line is JSON: json.loads above would have failed
    stopped = [e["child"] for e in events if e.get("event") == "child stopped"]
    assert stopped == ["api", "worker", "temporal"], "shutdown must run API → worker → server"
    activity_lines = [e for e in events if e.get("event") == "documents fingerprinted"]
    assert activity_lines and activity_lines[0]["workflow_id"] == run["id"]
    assert activity_lines[0]["run_id"] and activity_lines[0]["trace_id"] and activity_lines[0]["documents"] == 1
    assert "temporal_activity" not in activity_lines[0]
    assert (tmp_path / "data" / "temporal.db").exists()


async def test_up_with_a_configured_temporal_address_starts_no_dev_server(tmp_path, client):
    async with running_steward(tmp_path, TEMPORAL_ADDRESS=client.service_client.config.target_host) as steward:
        async with httpx.AsyncClient(base_url=steward.api_url, timeout=10) as http:
            docs = {"documents": [{"name": "a.txt", "text": "external"}]}
            started = await http.post("/v1/workflows/document-fingerprint/runs", json={"input": docs}, headers=headers())
            assert (await wait_for_run(http, started.json()["id"], headers()))["status"] == "completed"
        assert steward.child_pids("temporal") == []
        assert len(steward.child_pids("worker")) == len(steward.child_pids("api")) == 1
    assert not (tmp_path / "data" / "temporal.db").exists()


async def test_worker_killed_mid_activity_is_restarted_and_the_run_completes(tmp_path):
    gate = {"started_file": str(tmp_path / "started"), "release_file": str(tmp_path / "release")}
    async with running_steward(tmp_path) as steward:
        async with httpx.AsyncClient(base_url=steward.api_url, timeout=10) as http:
            started = await http.post("/v1/workflows/test-gated/runs", json={"input": gate}, headers=headers())
            assert started.status_code == 202
            await eventually(lambda: _file_says(gate["started_file"], "1"), "the first activity attempt")

            (first_worker,) = steward.child_pids("worker")
            (first_pool, *_) = await eventually(lambda: _logged_pool(steward), "the worker's CPU pool to start")
            os.kill(first_worker, signal.SIGKILL)
            await eventually(lambda: _restarted(steward), "the supervisor to restart the worker")
            # Its pool processes were told to follow it (PR_SET_PDEATHSIG): nothing is left behind.
            await eventually(lambda: _all_gone(first_pool), "the killed worker's CPU pool to exit")
            # The server notices the missed heartbeats and hands the activity to the new worker.
            await eventually(lambda: _file_says(gate["started_file"], "2"), "the retried activity attempt")
            Path(gate["release_file"]).touch()
            run = await wait_for_run(http, started.json()["id"], headers())

        assert run["status"] == "completed"
        assert run["result"] == {"attempts": 2}
        restarts = [e for e in steward.events() if e.get("event") == "child exited; restarting"]
        assert restarts[0]["child"] == "worker" and restarts[0]["returncode"] == -signal.SIGKILL


async def _file_says(path: str, text: str) -> bool:
    return Path(path).exists() and Path(path).read_text() == text


async def _restarted(steward: Steward) -> bool:
    return len(steward.child_pids("worker")) == 2


async def _logged_pool(steward: Steward) -> list[list[int]]:
    return steward.cpu_pool_pids()


async def _all_gone(pids: list[int]) -> bool:
    return not any(alive(pid) for pid in pids)


def test_up_with_api_port_in_use_exits_naming_the_setting(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "steward", "up"], env=steward_env(tmp_path, STEWARD_API_PORT=str(port)),
            capture_output=True, text=True, timeout=60,
        )
    assert result.returncode == 2
    assert f"port {port} (STEWARD_API_PORT) is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_up_with_two_settings_on_one_port_exits_naming_both(tmp_path):
    # The UI would take the port and answer the API's readiness probe with its own page.
    env = steward_env(tmp_path)
    env["STEWARD_UI_PORT"] = env["STEWARD_API_PORT"]
    result = subprocess.run([sys.executable, "-m", "steward", "up"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert f"STEWARD_API_PORT and STEWARD_UI_PORT are both {env['STEWARD_API_PORT']}" in result.stderr

"""`steward up`: run the embedded Temporal server, a worker and the API, and keep them running.

Start order is server → (wait until it answers) → worker and API. A child that dies is restarted
with exponential backoff and the restart is logged. Shutdown (SIGINT, SIGTERM) runs in reverse
dependency order: API first (no new runs), then the worker (in-flight activity attempts get the
grace period), then the server. Children run in their own sessions so a terminal's Ctrl-C reaches
only the supervisor, which then stops them in that order; on Linux they also get SIGTERM if the
supervisor itself dies, so nothing is left behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import httpx

from steward.devserver import UI_CODEC_ENDPOINT, dev_server_command
from steward.logs import get_logger
from steward.processes import die_with_parent
from steward.settings import Settings

log = get_logger("steward.supervisor")

RESTART_BACKOFF_INITIAL_S = 1.0
RESTART_BACKOFF_MAX_S = 30.0
# A child that stayed up this long is healthy again: its next crash restarts after the initial delay.
STABLE_AFTER_S = 60.0
SERVER_READY_TIMEOUT_S = 120.0
# How often to say the API is still not ready (it keeps being waited for).
API_READY_NOTICE_S = 30.0
API_STOP_TIMEOUT_S = 10.0
SERVER_STOP_TIMEOUT_S = 20.0


def _metrics_port_env(settings: Settings, n: int, ports: Sequence[int]) -> dict[str, str]:
    """The n-th worker's metrics port, from `ports` or else the next ports up: two processes
    cannot bind one."""
    if n < len(ports):
        return {"STEWARD_WORKER_METRICS_PORT": str(ports[n])}
    if n == 0 or settings.worker_metrics_port is None:
        return {}
    return {"STEWARD_WORKER_METRICS_PORT": str(settings.worker_metrics_port + n)}


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    stop_timeout_s: float
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    # Where the child's stdout and stderr go (None: the supervisor's own).
    stdout: IO[Any] | None = None
    stderr: IO[Any] | None = None
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            env=self.env,
            stdout=self.stdout,
            stderr=self.stderr,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        log.info("child started", child=self.name, pid=self.process.pid, restarts=self.restarts)

    async def stop(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self.stop_timeout_s)
        except TimeoutError:
            log.warning("child did not stop in time; killing it", child=self.name, pid=process.pid)
            process.kill()
            await process.wait()
        # uvicorn re-raises the SIGTERM it handled, so -SIGTERM after our SIGTERM is a clean stop.
        clean = process.returncode in (0, -signal.SIGTERM)
        log.info("child stopped", child=self.name, pid=process.pid, returncode=process.returncode, clean=clean)


class Supervisor:
    def __init__(self, settings: Settings, output: IO[Any] | None = None, env: dict[str, str] | None = None,
                 workers: int = 1, worker_metrics_ports: Sequence[int] = ()) -> None:
        """`output` takes every child's stdout and stderr (the benchmark keeps them in a file);
        by default they share the supervisor's. `env` is the children's environment (default:
        this process's), from which they read their settings. `workers` worker processes poll the
        same task queues, as workers on several hosts would (`steward bench --workers`)."""
        self.settings = settings
        env = dict(os.environ) if env is None else env
        self.stopping = asyncio.Event()
        python = sys.executable
        self.server: Child | None = None
        if settings.uses_embedded_temporal:
            # The UI decrypts payloads through the API's codec endpoint, for signed-in operators only;
            # operators open it under the API (settings.operator_ui_url), beside that endpoint.
            # The dev server prints a plain-text banner: keep stdout a pure JSON-lines stream.
            self.server = Child(
                "temporal", dev_server_command(settings, codec_endpoint=UI_CODEC_ENDPOINT), SERVER_STOP_TIMEOUT_S,
                env=env, stdout=output or sys.stderr, stderr=output,
            )
        self.workers = [
            Child("worker" if n == 0 else f"worker-{n + 1}", [python, "-m", "steward", "worker"],
                  settings.worker_grace_s + 10, env=env | _metrics_port_env(settings, n, worker_metrics_ports),
                  stdout=output, stderr=output)
            for n in range(workers)
        ]
        self.api = Child("api", [python, "-m", "steward", "api"], API_STOP_TIMEOUT_S,
                         env=env, stdout=output, stderr=output)
        self._watchers: list[asyncio.Task[None]] = []

    @property
    def worker(self) -> Child:
        return self.workers[0]

    @property
    def children(self) -> list[Child]:
        return [c for c in (self.server, *self.workers, self.api) if c is not None]

    async def _keep_running(self, child: Child) -> None:
        backoff = RESTART_BACKOFF_INITIAL_S
        while not self.stopping.is_set():
            started = time.monotonic()
            assert child.process is not None
            returncode = await child.process.wait()
            if self.stopping.is_set():
                return
            if time.monotonic() - started > STABLE_AFTER_S:
                backoff = RESTART_BACKOFF_INITIAL_S
            log.warning("child exited; restarting", child=child.name, returncode=returncode, restart_in_s=backoff)
            try:
                await asyncio.wait_for(self.stopping.wait(), backoff)
                return
            except TimeoutError:
                pass
            backoff = min(backoff * 2, RESTART_BACKOFF_MAX_S)
            child.restarts += 1
            await child.start()

    async def _wait_for(self, url: str, timeout_s: float, what: str) -> bool:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2.0) as http:
            while time.monotonic() < deadline and not self.stopping.is_set():
                try:
                    if (await http.get(url)).status_code == 200:
                        return True
                except httpx.HTTPError:
                    pass
                try:
                    await asyncio.wait_for(self.stopping.wait(), 0.25)
                except TimeoutError:
                    pass
        if not self.stopping.is_set():
            log.warning(f"{what} is not ready yet", url=url, waited_s=timeout_s)
        return False

    async def _start(self, child: Child) -> None:
        await child.start()
        self._watchers.append(asyncio.create_task(self._keep_running(child)))

    async def _register_search_attributes(self) -> None:
        """A data dir from before an attribute existed lacks it (the server registers its flags only
        when it creates its database): added now, before any worker runs code that sets it."""
        from temporalio.client import Client

        from steward.temporal_client import connect_options, register_search_attributes

        client = await Client.connect(**connect_options(self.settings))
        if added := await register_search_attributes(client):
            log.info("search attributes registered", added=added)

    async def run(self, on_ready: Callable[[], None] | None = None, *, handle_signals: bool = True) -> int:
        """Start the children and keep them running until SIGINT/SIGTERM (or stop()), then stop
        them in order. Without `handle_signals` the caller owns the signals and calls stop()."""
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self._request_stop, sig)
        try:
            if self.server is not None:
                await self._start(self.server)
                # The UI answers only once the frontend it proxies is up: a cheap, dependency-free probe.
                ui = f"http://127.0.0.1:{self.settings.ui_port}/api/v1/namespaces/{self.settings.temporal_namespace}"
                if not await self._wait_for(ui, SERVER_READY_TIMEOUT_S, "Temporal dev server"):
                    if self.stopping.is_set():
                        return 0
                    # Our own server not answering in two minutes will not fix itself: say so and stop.
                    log.error("Temporal dev server did not start; stopping", timeout_s=SERVER_READY_TIMEOUT_S)
                    return 1
                await self._register_search_attributes()
            for worker in self.workers:
                await self._start(worker)
            await self._start(self.api)
            # The API is ready once Temporal answers it; with an external cluster that may take a
            # while, and the children keep retrying, so keep waiting (and saying so) until then.
            while not self.stopping.is_set():
                if await self._wait_for(f"{self.settings.api_url}/readyz", API_READY_NOTICE_S, "API"):
                    log.info("steward ready", api=self.settings.api_url, ui=self.settings.operator_ui_url)
                    if on_ready is not None:
                        on_ready()
                    break
            await self.stopping.wait()
            return 0
        finally:
            await self.shutdown()

    def _request_stop(self, sig: signal.Signals) -> None:
        if self.stopping.is_set():
            return
        log.info("stopping", signal=sig.name)
        self.stopping.set()

    def stop(self) -> None:
        """Stop as on SIGTERM: run() shuts the children down in order and returns."""
        self._request_stop(signal.SIGTERM)

    async def shutdown(self) -> None:
        self.stopping.set()
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        # Reverse dependency order: nothing new comes in, work in hand finishes, then the server.
        await self.api.stop()
        await asyncio.gather(*(worker.stop() for worker in self.workers))
        if self.server is not None:
            await self.server.stop()
        log.info("steward stopped")

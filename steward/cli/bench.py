"""`steward bench`: how much the HTTP API costs over starting runs with the raw Temporal client.

One process holds everything, as the issue asks: an embedded Temporal dev server of its own
(temporary directory, free ports, stopped at the end), a worker for every cataloged workflow, and
the API served by uvicorn on a real socket. The same 3-step `steward-benchmark` workflow is run
two ways against that one server:

  raw  `client.execute_workflow(...)` with the same id scheme, memo and search attributes the API
       sets, so the server does the same work; latency is start → result.
  api  `POST /v1/workflows/steward-benchmark/runs`, then `GET /v1/runs/{id}?wait=...`, which
       answers as soon as the run ends, as a pipeline following a run would; latency is POST sent
       → terminal GET answered.

The table also shows "to close": submit → the close time Temporal recorded, which is what each
path would see if noticing completion were free.

A measurement, not a test: after printing it returns 0 whether or not the targets are met.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from pathlib import Path

import httpx
import uvicorn
from pydantic import SecretStr
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import (
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.envconfig import ClientConfigProfile

from api.app import create_app
from api.models import RunStatus
from steward import search_attributes as sa
from steward import temporal_client
from steward.devserver import dev_server_command
from steward.identity import Principal, issue_token
from steward.logs import configure_logging
from steward.settings import Settings
from steward.cli.supervisor import SERVER_READY_TIMEOUT_S, SERVER_STOP_TIMEOUT_S
from steward.processes import die_with_parent
from workers.worker import build_workers, run_workers
from workflows.benchmark import BenchmarkInput, BenchmarkOutput
from workflows.catalog import Catalog, discover
from workflows.spec import WorkflowSpec

WORKFLOW = "steward-benchmark"
PAYLOAD = "steward"
PRINCIPAL = Principal(sub="bench", roles=("operator",), tenant="bench")
TOKEN_TTL = timedelta(hours=12)
# The API path follows a run with GET ?wait=: one request that answers when the run ends. Polling
# instead (measured: GET every 25 ms) spent the CPU a 2-core machine's worker needs, 0.67x raw.
FOLLOW_WAIT_S = 30
# The measured runs of each path are split into rounds run in ABBA order (raw, api, api, raw, ...):
# neither path always runs first on a colder server or last on a bigger database, and linear drift
# cancels out. Paths never run at the same time, so each one's throughput is its own.
ROUNDS = 4
# Activities here finish in microseconds; nothing is worth waiting for at shutdown.
WORKER_GRACE = timedelta(seconds=2)
API_READY_TIMEOUT_S = 30.0
HTTP_TIMEOUT_S = 30.0
_TERMINAL = {s.value for s in RunStatus} - {RunStatus.running.value, RunStatus.waiting_for_approval.value}
_PROBE_INTERVAL_S = 0.1


class BenchSetupError(Exception):
    """The benchmark could not be set up (server, worker or API); nothing was measured."""


class _BenchSettings(Settings):
    @cached_property
    def temporal_profile(self) -> ClientConfigProfile:
        # The benchmark measures its own embedded server, whatever TEMPORAL_* or a TOML profile
        # name: an empty profile keeps every address and TLS option at the dev server's.
        return ClientConfigProfile()


class _InProcessServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn would take SIGINT for itself and stop only the API; leaving it to asyncio.run
        # makes Ctrl-C cancel the whole benchmark, so every cleanup below runs.
        yield


# --- what is measured -------------------------------------------------------------------------


@dataclass
class Sample:
    workflow_id: str
    submitted_at: float  # wall clock, to compare with the close time Temporal records
    latency_s: float
    polls: int = 0
    to_close_s: float | None = None


@dataclass
class PathResult:
    name: str
    samples: list[Sample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    busy_s: float = 0.0  # wall time of this path's measured rounds
    # CPU spent during those rounds: by this one process (worker + API + both clients), and by the
    # Temporal server. On a small machine these, not waiting, decide throughput.
    process_cpu_s: float = 0.0
    server_cpu_s: float | None = 0.0

    @property
    def completed(self) -> int:
        return len(self.samples)

    def latency_ms(self, q: float) -> float:
        return percentile([s.latency_s for s in self.samples], q) * 1000

    def to_close_ms(self, q: float) -> float:
        return percentile([s.to_close_s for s in self.samples if s.to_close_s is not None], q) * 1000

    @property
    def throughput(self) -> float:
        return self.completed / self.busy_s if self.busy_s else 0.0

    def cpu_ms_per_run(self, seconds: float | None) -> float:
        return seconds / self.completed * 1000 if self.completed and seconds is not None else float("nan")

    @property
    def polls_per_run(self) -> float:
        return sum(s.polls for s in self.samples) / self.completed if self.completed else 0.0


@dataclass
class BenchReport:
    runs: int
    concurrency: int
    warmup: int
    temporal_address: str
    api_url: str
    raw: PathResult
    api: PathResult

    @property
    def throughput_ratio(self) -> float:
        return self.api.throughput / self.raw.throughput if self.raw.throughput else float("nan")

    @property
    def p50_ratio(self) -> float:
        raw = self.raw.latency_ms(50)
        return self.api.latency_ms(50) / raw if raw else float("nan")


# The targets from the issue that asked for this benchmark.
THROUGHPUT_RATIO_TARGET = 0.85
P50_RATIO_TARGET = 1.15


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# --- the two paths ----------------------------------------------------------------------------


class RunFailed(Exception):
    """A run did not complete as expected; counted as a failure of its path, not measured."""


def _raw_path(client: Client, spec: WorkflowSpec) -> Callable[[], Awaitable[Sample]]:
    request = BenchmarkInput(payload=PAYLOAD)
    # What api/routes/workflows.py puts on a run, so the server stores and indexes the same things.
    memo = {
        "requested_by": PRINCIPAL.sub,
        "tenant": PRINCIPAL.tenant,
        "request_sha256": hashlib.sha256(request.model_dump_json().encode()).hexdigest(),
        "callback_url": None,
    }
    attributes = sa.for_new_run(spec.name, PRINCIPAL.tenant, PRINCIPAL.sub)

    async def run_once() -> Sample:
        workflow_id = f"{spec.name}-{uuid.uuid4().hex}"
        submitted_at = time.time()
        started = time.perf_counter()
        result = await client.execute_workflow(
            spec.name,
            request,
            id=workflow_id,
            task_queue=spec.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            memo=memo,
            search_attributes=attributes,
            static_summary=spec.static_summary(request),
            result_type=BenchmarkOutput,
        )
        latency = time.perf_counter() - started
        if not result.digest:
            raise RunFailed(f"{workflow_id}: empty result")
        return Sample(workflow_id, submitted_at, latency)

    return run_once


def _api_path(http: httpx.AsyncClient, spec: WorkflowSpec) -> Callable[[], Awaitable[Sample]]:
    body = {"input": BenchmarkInput(payload=PAYLOAD).model_dump(mode="json")}

    async def run_once() -> Sample:
        submitted_at = time.time()
        started = time.perf_counter()
        response = await http.post(f"/v1/workflows/{spec.name}/runs", json=body)
        if response.status_code != 202:
            raise RunFailed(f"POST → {response.status_code}: {response.text[:200]}")
        accepted = response.json()
        polls = 0
        while True:
            response = await http.get(accepted["links"]["self"], params={"wait": FOLLOW_WAIT_S})
            polls += 1
            if response.status_code != 200:
                raise RunFailed(f"GET {accepted['id']} → {response.status_code}: {response.text[:200]}")
            run = response.json()
            if run["status"] in _TERMINAL:
                break
        latency = time.perf_counter() - started
        if run["status"] != RunStatus.completed.value or not (run.get("result") or {}).get("digest"):
            raise RunFailed(f"{accepted['id']}: {run['status']} {run.get('error')}")
        return Sample(accepted["id"], submitted_at, latency, polls)

    return run_once


async def _round(
    run_once: Callable[[], Awaitable[Sample]], count: int, concurrency: int
) -> tuple[list[Sample], list[str], float]:
    """`count` runs, at most `concurrency` in flight; latency excludes waiting for a slot."""
    slots = asyncio.Semaphore(concurrency)

    async def one() -> Sample:
        async with slots:
            return await run_once()

    started = time.perf_counter()
    outcomes = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    elapsed = time.perf_counter() - started
    samples = [o for o in outcomes if isinstance(o, Sample)]
    failures = [f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)]
    return samples, failures, elapsed


def _round_sizes(runs: int) -> list[int]:
    rounds = min(ROUNDS, runs)
    return [runs // rounds + (1 if i < runs % rounds else 0) for i in range(rounds)]


def _server_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process `pid` so far, where /proc exists (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(
    paths: dict[str, Callable[[], Awaitable[Sample]]], runs: int, concurrency: int, warmup: int, server_pid: int
) -> dict[str, PathResult]:
    if warmup:
        for run_once in paths.values():
            await _round(run_once, warmup, concurrency)
    results = {name: PathResult(name) for name in paths}
    names = list(paths)
    for i, size in enumerate(_round_sizes(runs)):
        # ABBA: raw, api | api, raw | raw, api | ...
        for name in names if i % 2 == 0 else reversed(names):
            result = results[name]
            process_cpu, server_cpu = time.process_time(), _server_cpu_s(server_pid)
            samples, failures, elapsed = await _round(paths[name], size, concurrency)
            result.samples += samples
            result.failures += failures
            result.busy_s += elapsed
            result.process_cpu_s += time.process_time() - process_cpu
            server_now = _server_cpu_s(server_pid)
            if result.server_cpu_s is None or server_cpu is None or server_now is None:
                result.server_cpu_s = None
            else:
                result.server_cpu_s += server_now - server_cpu
    return results


async def _fill_close_times(client: Client, results: list[PathResult]) -> None:
    """Ask Temporal when each run closed; done after measuring so it loads no measured round."""
    slots = asyncio.Semaphore(20)

    async def fill(sample: Sample) -> None:
        async with slots:
            description = await client.get_workflow_handle(sample.workflow_id).describe()
        if description.close_time is not None:
            sample.to_close_s = description.close_time.timestamp() - sample.submitted_at

    await asyncio.gather(*(fill(s) for r in results for s in r.samples))


# --- the things being measured, each started and stopped in order ------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.asynccontextmanager
async def _dev_server(settings: Settings) -> AsyncIterator[tuple[Client, int]]:
    """Start the embedded dev server; once it serves Steward's search attributes, yield a client
    and the server's pid."""
    log_path = settings.data_dir / "temporal.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            *dev_server_command(settings),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            # Ctrl-C reaches only us; we stop the server after the worker, as the supervisor does.
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
    try:
        yield await _connect_when_ready(settings, process, log_path), process.pid
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), SERVER_STOP_TIMEOUT_S)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _connect_when_ready(settings: Settings, process: asyncio.subprocess.Process, log_path: Path) -> Client:
    deadline = time.monotonic() + SERVER_READY_TIMEOUT_S
    wanted = {key.name for key in sa.ALL}
    last_error = "no answer yet"
    client: Client | None = None
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise BenchSetupError(
                f"the Temporal dev server exited with code {process.returncode}:\n{_tail(log_path)}"
            )
        try:
            client = client or await temporal_client.connect(settings)
            # Runs carry Steward's search attributes; the server registers them just after it
            # starts answering, and a start before that fails.
            registered = await client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace=settings.temporal_namespace)
            )
            if wanted <= set(registered.custom_attributes):
                return client
            last_error = "search attributes not registered yet"
        except Exception as exc:  # anything short of an answer means "not yet"
            last_error = f"{type(exc).__name__}: {exc}"
        await asyncio.sleep(_PROBE_INTERVAL_S)
    raise BenchSetupError(
        f"the Temporal dev server at {settings.temporal_address} was not ready after "
        f"{SERVER_READY_TIMEOUT_S:.0f} s ({last_error}):\n{_tail(log_path)}"
    )


@contextlib.asynccontextmanager
async def _workers(client: Client, catalog: Catalog) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_workers(build_workers(client, catalog, grace=WORKER_GRACE), stop))
    try:
        yield task
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await task


@contextlib.asynccontextmanager
async def _api(
    settings: Settings, client: Client, sock: socket.socket, token: str
) -> AsyncIterator[tuple[httpx.AsyncClient, asyncio.Task[None]]]:
    """Serve the API on `sock` and yield one HTTP client for it, once /readyz answers 200."""
    server = _InProcessServer(uvicorn.Config(
        create_app(settings, client=client),
        log_config=None,
        access_log=False,
        lifespan="on",
    ))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    http = httpx.AsyncClient(
        base_url=settings.api_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=HTTP_TIMEOUT_S,
        trust_env=False,  # a proxy from the environment must not sit between us and 127.0.0.1
    )
    try:
        deadline = time.monotonic() + API_READY_TIMEOUT_S
        while True:
            if task.done():
                raise BenchSetupError(f"the API stopped while starting: {task.exception() or 'lifespan failed'}")
            try:
                if (await http.get("/readyz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise BenchSetupError(
                    f"the API at {settings.api_url} was not ready after {API_READY_TIMEOUT_S:.0f} s"
                )
            await asyncio.sleep(_PROBE_INTERVAL_S)
        yield http, task
    finally:
        await http.aclose()
        server.should_exit = True
        with contextlib.suppress(Exception):
            await task


async def _unless_stopped(
    work: Awaitable[dict[str, PathResult]], **watched: asyncio.Task[None]
) -> dict[str, PathResult]:
    """Await `work`, failing fast if the worker or the API stops under it (runs would hang)."""
    work_task = asyncio.ensure_future(work)
    try:
        await asyncio.wait([work_task, *watched.values()], return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not work_task.done():
            work_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work_task
    if work_task.cancelled() or not work_task.done():
        name, task = next((name, task) for name, task in watched.items() if task.done())
        cause = None if task.cancelled() else task.exception()
        raise BenchSetupError(f"the {name} stopped during the benchmark ({cause!r})")
    return work_task.result()


async def run_benchmark(
    runs: int, concurrency: int, warmup: int
) -> BenchReport:
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it Nagle's algorithm and delayed ACKs add 40 ms to every API response.
    with (
        tempfile.TemporaryDirectory(prefix="steward-bench-") as data_dir,
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as api_socket,
    ):
        api_socket.bind(("127.0.0.1", 0))  # held from here on: nothing else can take the API's port
        secret = uuid.uuid4().hex + uuid.uuid4().hex
        settings = _BenchSettings(
            data_dir=Path(data_dir),
            temporal_port=_free_port(),
            ui_port=_free_port(),
            api_port=api_socket.getsockname()[1],
            jwt_secret=SecretStr(secret),
            # One principal sends every request here; the per-principal limit is not what is measured.
            rate_limit_per_minute=1_000_000,
        )
        catalog = discover(settings.workflow_packages)
        spec = catalog.get(WORKFLOW)
        if spec is None:
            raise BenchSetupError(f"the catalog has no {WORKFLOW!r} workflow")
        token = issue_token(secret, PRINCIPAL, TOKEN_TTL)
        async with contextlib.AsyncExitStack() as stack:
            client, server_pid = await stack.enter_async_context(_dev_server(settings))
            worker = await stack.enter_async_context(_workers(client, catalog))
            http, api = await stack.enter_async_context(_api(settings, client, api_socket, token))
            paths = {"raw": _raw_path(client, spec), "api": _api_path(http, spec)}
            measuring = _measure(paths, runs, concurrency, warmup, server_pid)
            results = await _unless_stopped(measuring, worker=worker, API=api)
            await _fill_close_times(client, list(results.values()))
        return BenchReport(
            runs=runs,
            concurrency=concurrency,
            warmup=warmup,
            temporal_address=settings.temporal_address,
            api_url=settings.api_url,
            raw=results["raw"],
            api=results["api"],
        )


# --- the report -------------------------------------------------------------------------------


def _verdict(met: bool) -> str:
    return "PASS" if met else "MISS"


def format_report(report: BenchReport) -> str:
    lines = [
        f"steward bench: {WORKFLOW} (3 activity steps), {report.runs} measured runs per path after "
        f"{report.warmup} warm-up runs, concurrency {report.concurrency}",
        f"  one process: Temporal dev server {report.temporal_address} (own, temporary), worker, "
        f"API {report.api_url}",
        f"  raw = client.execute_workflow; api = POST /v1/workflows/{WORKFLOW}/runs, then "
        f"GET /v1/runs/{{id}}?wait={FOLLOW_WAIT_S} until the run ends",
        f"  {ROUNDS} rounds per path in ABBA order (raw, api, api, raw, ...), never both at once",
        "",
        f"{'':<42}{'p50 to':>9}{'':>11}{'CPU ms/run':>18}",
        f"{'path':<5}{'runs':>6}{'failed':>7}{'p50 ms':>8}{'p90 ms':>8}{'runs/s':>8}{'close ms':>9}"
        f"{'GETs/run':>11}{'process':>9}{'server':>9}",
    ]
    for path in (report.raw, report.api):
        polls = f"{path.polls_per_run:.1f}" if path.name == "api" else "-"
        lines.append(
            f"{path.name:<5}{path.completed:>6}{len(path.failures):>7}{path.latency_ms(50):>8.1f}"
            f"{path.latency_ms(90):>8.1f}{path.throughput:>8.1f}{path.to_close_ms(50):>9.1f}{polls:>11}"
            f"{path.cpu_ms_per_run(path.process_cpu_s):>9.1f}{path.cpu_ms_per_run(path.server_cpu_s):>9.1f}"
        )
    lines += [
        "",
        f"API / raw throughput: {report.throughput_ratio:.3f}  (target >= {THROUGHPUT_RATIO_TARGET})  "
        f"{_verdict(report.throughput_ratio >= THROUGHPUT_RATIO_TARGET)}",
        f"API p50 / raw p50:    {report.p50_ratio:.3f}  (target <= {P50_RATIO_TARGET})  "
        f"{_verdict(report.p50_ratio <= P50_RATIO_TARGET)}",
        "",
        "p50 to close: submit → the close time Temporal recorded.",
        "CPU ms/run: CPU used during the path's rounds per run, by this process (worker, API and "
        "clients together) and by the Temporal server.",
    ]
    for path in (report.raw, report.api):
        for failure in path.failures[:3]:
            lines.append(f"{path.name} failure: {failure}")
        if len(path.failures) > 3:
            lines.append(f"{path.name}: {len(path.failures) - 3} more failures")
    return "\n".join(lines)


async def _stoppable(work: Awaitable[BenchReport]) -> BenchReport:
    """Await `work`, cancelling it on SIGTERM as asyncio.run already does on Ctrl-C, so the dev
    server is stopped and the temporary directory removed either way."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await work
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def main(runs: int = 200, concurrency: int = 10, warmup: int = 20) -> int:
    """Run the benchmark and print its table; 0 once printed, 1 if it could not be set up."""
    if runs < 1 or concurrency < 1 or warmup < 0:
        print("steward bench: --runs and --concurrency must be at least 1, --warmup at least 0", file=sys.stderr)
        return 2
    configure_logging("warning", "bench")
    print("steward bench: starting a Temporal dev server, a worker and the API ...", file=sys.stderr, flush=True)
    try:
        report = asyncio.run(_stoppable(run_benchmark(runs, concurrency, warmup)))
    except BenchSetupError as exc:
        print(f"steward bench: {exc}", file=sys.stderr)
        return 1
    except asyncio.CancelledError:
        print("steward bench: stopped by SIGTERM before the end; nothing measured to report", file=sys.stderr)
        return 1
    print(format_report(report))
    return 0

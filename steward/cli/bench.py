"""`steward bench`: a cataloged workflow as users run it, against what the platform and the work cost.

It starts a Steward of its own, as `steward up` does (a Temporal dev server, a worker with its
CPU pool, the API: separate processes, a temporary data dir, free ports), and drives the
workflow's `sample_input` three ways from this process:

  api   `POST /v1/workflows/<name>/runs`, then `GET /v1/runs/{id}?wait=...`, which answers as
        soon as the run ends, as a pipeline following a run would;
  raw   `client.execute_workflow(...)` with the same id scheme, memo and search attributes the
        API sets: what the workflow costs without the API;
  bare  `steward-benchmark`, three activity steps that do nothing, with the raw client: what
        three durable steps cost on this server.

api/raw shows the platform's own overhead; api/bare how far the workflow's real work (an LLM
step, a PDF) is from three empty steps. Latency is measured one run at a time, throughput at
`--concurrency`, each in rounds alternating the paths' order (ABBA), never two paths at once.
CPU per run of each process, and the worker's and API's resident memory after every round, are
read from /proc. `--workers N` starts N worker processes on the same task queues, as N worker
hosts would be; their CPU and memory are added up under "worker".

A measurement, not a test: after printing it returns 0 whether or not the targets are met.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError
from temporalio.api.enums.v1 import TimeoutType, WorkflowTaskFailedCause
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.envconfig import ClientConfigProfile

from api.models import RunStatus
from steward import search_attributes as sa
from steward import temporal_client
from steward.cli.supervisor import SERVER_READY_TIMEOUT_S, Supervisor
from steward.devserver import free_ports
from steward.identity import Principal, issue_token
from steward.logs import configure_logging
from steward.settings import Settings
from workers.cpu import default_size
from workflows.catalog import discover
from workflows.spec import WorkflowSpec

BARE = "steward-benchmark"
DEFAULT_WORKFLOW = "compliance-documentation"
PRINCIPAL = Principal(sub="bench", roles=("operator",), tenant="bench")
TOKEN_TTL = timedelta(hours=12)
# The API path follows a run with GET ?wait=: one request that answers when the run ends.
# Polling instead (GET every 25 ms) spent the CPU a 2-core machine's worker needs.
FOLLOW_WAIT_S = 30
ROUNDS = 4
HTTP_TIMEOUT_S = 60.0
READY_TIMEOUT_S = SERVER_READY_TIMEOUT_S + 60
_TERMINAL = {s.value for s in RunStatus} - {RunStatus.running.value, RunStatus.waiting_for_approval.value}

# The targets of the issue that asked for this benchmark.
API_RAW_THROUGHPUT = 0.85  # at least, at --concurrency
API_RAW_P50 = 1.15  # at most, one at a time
API_BARE_THROUGHPUT = 0.30
API_BARE_P50 = 3.0
BARE_P50_MS = 45.0  # the 3-step benchmark through the API
BARE_RUNS_PER_MIN = 2100.0


class BenchSetupError(Exception):
    """The benchmark could not be set up; nothing was measured."""


class RunFailed(Exception):
    """A run did not complete as expected; counted as a failure of its path, not measured."""


# --- what is measured -------------------------------------------------------------------------


@dataclass
class Sample:
    workflow_id: str
    latency_s: float


@dataclass
class PathResult:
    name: str
    samples: list[Sample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    busy_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)  # per process: worker, api, server, bench

    @property
    def completed(self) -> int:
        return len(self.samples)

    def latency_ms(self, q: float) -> float:
        return percentile([s.latency_s for s in self.samples], q) * 1000

    @property
    def throughput(self) -> float:
        return self.completed / self.busy_s if self.busy_s else 0.0

    def cpu_ms_per_run(self, process: str) -> float:
        return self.cpu_s.get(process, 0.0) / self.completed * 1000 if self.completed else float("nan")


@dataclass
class Retries:
    """What the measured runs' histories say went wrong on the way, though every run completed."""

    histories: int = 0
    activity_timeouts: int = 0  # an attempt cancelled by its start-to-close (or heartbeat) timeout
    activity_failures: int = 0  # an attempt that raised and was retried
    workflow_task_problems: int = 0  # workflow tasks that timed out or failed (a starved worker)
    # Why, by timeout type (SCHEDULE_TO_START: it waited on a busy worker's sticky queue, then went
    # to another; START_TO_CLOSE: a worker took it and did not finish in time) or failure cause.
    workflow_task_causes: dict[str, int] = field(default_factory=dict)
    # The worker identities (pid@host) that completed workflow tasks: with --workers, all of them.
    workers_seen: set[str] = field(default_factory=set)

    @property
    def clean(self) -> bool:
        return not (self.activity_timeouts or self.activity_failures or self.workflow_task_problems)


@dataclass
class MemorySample:
    runs: int  # runs completed so far, all paths and phases
    rss_mib: dict[str, float]


@dataclass
class BenchReport:
    workflow: str
    concurrency: int
    cpu_workers: int
    latency: dict[str, PathResult]
    throughput: dict[str, PathResult]
    memory: list[MemorySample]
    retries: Retries = field(default_factory=Retries)
    sample: dict[str, Any] | None = None  # the input measured, when not the workflow's sample_input
    workers: int = 1  # worker processes on the same task queues (each with its own CPU pool)

    def ratio(self, metric: str, path: str, against: str) -> float:
        if metric == "throughput":
            base = self.throughput[against].throughput
            return self.throughput[path].throughput / base if base else float("nan")
        base = self.latency[against].latency_ms(50)
        return self.latency[path].latency_ms(50) / base if base else float("nan")


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def round_sizes(runs: int) -> list[int]:
    rounds = min(ROUNDS, runs)
    return [runs // rounds + (1 if i < runs % rounds else 0) for i in range(rounds)]


# --- processes, read from /proc ---------------------------------------------------------------


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for t in Path(f"/proc/{pid}/task").iterdir()
                for p in (t / "children").read_text().split()]
    except OSError:
        return []


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it (the worker's CPU pool and manager)."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += _children(current)
    return tree


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far (and of their children that have exited)."""
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            total += sum(int(v) for v in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = _stat(pid)
        if fields is not None:
            total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return total / (1024 * 1024)


class Processes:
    """Steward's processes, by role, as the supervisor started them."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def pids(self) -> dict[str, list[int]]:
        s = self.supervisor
        found = {"worker": [pid for w in s.workers if w.process for pid in process_tree(w.process.pid)],
                 "api": [s.api.process.pid] if s.api.process else [],
                 "server": [s.server.process.pid] if s.server and s.server.process else []}
        found["bench"] = [os.getpid()]
        return found

    def cpu(self) -> dict[str, float]:
        return {role: cpu_seconds(pids) for role, pids in self.pids().items()}

    def memory(self) -> dict[str, float]:
        return {role: rss_mib(pids) for role, pids in self.pids().items() if role != "bench"}


# --- the three paths --------------------------------------------------------------------------


RunOnce = Callable[[], Awaitable[Sample]]


def raw_path(client: Client, spec: WorkflowSpec, sample: dict[str, Any] | None = None) -> RunOnce:
    request = spec.input_model.model_validate(sample if sample is not None else spec.sample_input)
    # What api/routes/workflows.py puts on a run, so the server stores and indexes the same things.
    memo = {
        "requested_by": PRINCIPAL.sub, "tenant": PRINCIPAL.tenant, "callback_url": None,
        "request_sha256": hashlib.sha256(request.model_dump_json().encode()).hexdigest(),
    }
    attributes = sa.for_new_run(spec.name, PRINCIPAL.tenant, PRINCIPAL.sub)

    async def run_once() -> Sample:
        workflow_id = f"{spec.name}-{uuid.uuid4().hex}"
        started = time.perf_counter()
        await client.execute_workflow(
            spec.name, request, id=workflow_id, task_queue=spec.task_queue,
            execution_timeout=spec.execution_timeout,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE, id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            memo=memo, search_attributes=attributes, static_summary=spec.static_summary(request),
            result_type=spec.output_model,
        )
        return Sample(workflow_id, time.perf_counter() - started)

    return run_once


def api_path(http: httpx.AsyncClient, spec: WorkflowSpec, sample: dict[str, Any] | None = None) -> RunOnce:
    body = {"input": dict(sample if sample is not None else spec.sample_input or {})}

    async def run_once() -> Sample:
        started = time.perf_counter()
        response = await http.post(f"/v1/workflows/{spec.name}/runs", json=body)
        if response.status_code != 202:
            raise RunFailed(f"POST → {response.status_code}: {response.text[:200]}")
        accepted = response.json()
        while True:
            response = await http.get(accepted["links"]["self"], params={"wait": FOLLOW_WAIT_S})
            if response.status_code != 200:
                raise RunFailed(f"GET {accepted['id']} → {response.status_code}: {response.text[:200]}")
            run = response.json()
            if run["status"] in _TERMINAL:
                break
        latency = time.perf_counter() - started
        if run["status"] != RunStatus.completed.value:
            raise RunFailed(f"{accepted['id']}: {run['status']} {run.get('error')}")
        return Sample(accepted["id"], latency)

    return run_once


_PROBLEM_EVENTS = {
    "activity_task_timed_out_event_attributes": "activity_timeouts",
    "activity_task_failed_event_attributes": "activity_failures",
    "workflow_task_timed_out_event_attributes": "workflow_task_problems",
    "workflow_task_failed_event_attributes": "workflow_task_problems",
}


async def count_retries(client: Client, results: list[dict[str, PathResult]]) -> Retries:
    """Read every measured run's history, after measuring, so it loads no measured round."""
    retries = Retries()
    slots = asyncio.Semaphore(20)

    async def read(workflow_id: str) -> None:
        async with slots:
            history = await client.get_workflow_handle(workflow_id).fetch_history()
        retries.histories += 1
        for event in history.events:
            if event.HasField("workflow_task_completed_event_attributes"):
                retries.workers_seen.add(event.workflow_task_completed_event_attributes.identity)
            kind = event.WhichOneof("attributes") or ""
            problem = _PROBLEM_EVENTS.get(kind)
            if problem == "workflow_task_problems":
                cause = (TimeoutType.Name(event.workflow_task_timed_out_event_attributes.timeout_type)
                         if kind == "workflow_task_timed_out_event_attributes" else
                         WorkflowTaskFailedCause.Name(event.workflow_task_failed_event_attributes.cause))
                cause = cause.removeprefix("TIMEOUT_TYPE_").removeprefix("WORKFLOW_TASK_FAILED_CAUSE_")
                retries.workflow_task_causes[cause] = retries.workflow_task_causes.get(cause, 0) + 1
            if problem:
                setattr(retries, problem, getattr(retries, problem) + 1)

    await asyncio.gather(*(read(s.workflow_id) for phase in results for r in phase.values() for s in r.samples))
    return retries


async def run_round(run_once: RunOnce, count: int, concurrency: int) -> tuple[list[Sample], list[str], float]:
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


async def measure(paths: dict[str, RunOnce], runs: int, concurrency: int, processes: Processes,
                  memory: list[MemorySample] | None = None, done_before: int = 0) -> dict[str, PathResult]:
    results = {name: PathResult(name) for name in paths}
    names = list(paths)
    done = done_before
    for i, size in enumerate(round_sizes(runs)):
        for name in names if i % 2 == 0 else reversed(names):  # ABBA: no path always first
            result = results[name]
            before = processes.cpu()
            samples, failures, elapsed = await run_round(paths[name], size, concurrency)
            after = processes.cpu()
            result.samples += samples
            result.failures += failures
            result.busy_s += elapsed
            for role, seconds in after.items():
                result.cpu_s[role] = result.cpu_s.get(role, 0.0) + max(0.0, seconds - before.get(role, 0.0))
            done += size
        if memory is not None:
            memory.append(MemorySample(done, processes.memory()))
    return results


# --- a Steward of its own ---------------------------------------------------------------------


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class _OwnServerSettings(Settings):
    @cached_property
    def temporal_profile(self) -> ClientConfigProfile:
        # The benchmark measures its own embedded server, whatever TEMPORAL_* or a profile in the
        # environment names: an empty profile keeps the dev server's address and no TLS.
        return ClientConfigProfile()


@contextlib.asynccontextmanager
async def own_steward(data_dir: Path, cpu_workers: int | None,
                      workers: int = 1) -> AsyncIterator[tuple[Settings, Processes]]:
    """`steward up` in a temporary data dir on free ports, quiet, its output in steward.log, with
    `workers` worker processes on the same task queues."""
    api_port, temporal_port, ui_port, *metrics_ports = free_ports(3 + workers)
    metrics_port = metrics_ports[0]
    values: dict[str, Any] = {
        "data_dir": data_dir, "api_port": api_port, "temporal_port": temporal_port, "ui_port": ui_port,
        "worker_metrics_port": metrics_port,
        "jwt_secret": uuid.uuid4().hex + uuid.uuid4().hex,
        "log_level": "warning",
        "llm_provider": "offline",  # no network, no spend: the platform is measured, not a model
        # One principal sends every request here; the per-principal limit is not what is measured.
        "rate_limit_per_minute": 100_000_000,
        "llm_daily_spend_cap_usd": None,
        "cpu_workers": cpu_workers,
    }
    if font_cache := os.environ.get("STEWARD_FONT_CACHE"):
        values["font_cache"] = font_cache  # prepared fonts are the same for every data dir: kept, not remade
    settings = _OwnServerSettings(**values)
    # The children read their settings from the environment: the same values, and no TEMPORAL_*
    # that would point them at another server.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "STEWARD_"))}
    env |= {f"STEWARD_{name.upper()}": "none" if value is None else str(value) for name, value in values.items()}
    log_path = data_dir / "steward.log"
    with log_path.open("w") as output:
        supervisor = Supervisor(settings, output=output, env=env, workers=workers, worker_metrics_ports=metrics_ports)
        ready = asyncio.Event()
        running = asyncio.create_task(supervisor.run(on_ready=ready.set, handle_signals=False))
        try:
            waiting = asyncio.create_task(ready.wait())
            await asyncio.wait([waiting, running], timeout=READY_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
            if not ready.is_set():
                waiting.cancel()
                raise BenchSetupError(f"Steward did not become ready:\n{_tail(log_path)}")
            yield settings, Processes(supervisor)
            if running.done():
                raise BenchSetupError(f"Steward stopped during the benchmark:\n{_tail(log_path)}")
        finally:
            supervisor.stop()
            await running


async def run_benchmark(workflow: str, runs: int, concurrency: int, latency_runs: int, warmup: int,
                        cpu_workers: int | None = None, sample: dict[str, Any] | None = None,
                        workers: int = 1) -> BenchReport:
    """`sample` replaces the workflow's sample_input (steward-benchmark's local_activities, say)."""
    catalog = discover()
    spec, bare = catalog.get(workflow), catalog.get(BARE)
    if spec is None:
        raise BenchSetupError(f"no workflow named {workflow!r}; the catalog has {', '.join(sorted(catalog.specs))}")
    if sample is None and spec.sample_input is None:
        raise BenchSetupError(f"{workflow} declares no sample_input in its WorkflowSpec; give one with --input")
    if sample is not None:
        try:
            spec.input_model.model_validate(sample)
        except ValidationError as exc:
            raise BenchSetupError(f"--input is not a valid {workflow} input: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="steward-bench-") as scratch:
        async with own_steward(Path(scratch), cpu_workers, workers) as (settings, processes):
            client = await temporal_client.connect(settings)
            token = issue_token(settings.jwt_signing_secret(), PRINCIPAL, TOKEN_TTL)
            async with httpx.AsyncClient(
                base_url=settings.api_url, headers={"Authorization": f"Bearer {token}"}, timeout=HTTP_TIMEOUT_S,
                # Enough connections for every run in flight, and no proxy between us and 127.0.0.1.
                limits=httpx.Limits(max_connections=concurrency + 10), trust_env=False,
            ) as http:
                paths = {"api": api_path(http, spec, sample), "raw": raw_path(client, spec, sample)}
                if workflow != BARE:
                    paths["bare"] = raw_path(client, bare)
                if warmup:
                    for run_once in paths.values():
                        await run_round(run_once, warmup, concurrency)
                memory = [MemorySample(warmup * len(paths), processes.memory())]
                latency = await measure(paths, latency_runs, 1, processes)
                throughput = await measure(paths, runs, concurrency, processes, memory,
                                           done_before=(warmup + latency_runs) * len(paths))
            retries = await count_retries(client, [latency, throughput])
        return BenchReport(workflow, concurrency, settings.cpu_workers or default_size(), latency, throughput, memory,
                           retries, sample, workers)


# --- the report -------------------------------------------------------------------------------


def _verdict(met: bool) -> str:
    return "PASS" if met else "MISS"


def _check(label: str, value: float, target: float, at_least: bool) -> str:
    met = value >= target if at_least else value <= target
    sign = ">=" if at_least else "<="
    return f"  {label:<44}{value:>8.3f}  (target {sign} {target})  {_verdict(met)}"


def _workers(report: BenchReport) -> str:
    return "one worker" if report.workers == 1 else f"{report.workers} workers"


def format_report(report: BenchReport) -> str:
    w = report.workflow
    lines = [
        f"steward bench: {w}{' with input ' + json.dumps(report.sample) if report.sample else ''}, on a Steward of "
        f"its own (dev server, {_workers(report)} with {report.cpu_workers} CPU process(es)"
        f"{' each' if report.workers > 1 else ''}, API; separate processes, temporary data dir)",
        f"  api  = POST /v1/workflows/{w}/runs, then GET /v1/runs/{{id}}?wait={FOLLOW_WAIT_S} until it ends",
        "  raw  = client.execute_workflow with the API's id scheme, memo and search attributes",
    ]
    if "bare" in report.throughput:
        lines.append(f"  bare = {BARE} (3 activity steps that do nothing) with client.execute_workflow")
    phases = ((f"one at a time ({next(iter(report.latency.values())).completed} runs per path)", report.latency),
              (f"at concurrency {report.concurrency}", report.throughput))
    for title, results in phases:
        lines += ["", title, f"  {'path':<6}{'runs':>6}{'failed':>7}{'p50 ms':>9}{'p90 ms':>9}{'runs/s':>8}"
                  f"{'runs/min':>10}   CPU ms/run: worker     api  server   bench"]
        for r in results.values():
            cpu = "".join(f"{r.cpu_ms_per_run(p):>8.1f}" for p in ("worker", "api", "server", "bench"))
            lines.append(f"  {r.name:<6}{r.completed:>6}{len(r.failures):>7}{r.latency_ms(50):>9.1f}"
                         f"{r.latency_ms(90):>9.1f}{r.throughput:>8.1f}{r.throughput * 60:>10.0f}{'':>14}{cpu}")
    lines += ["", "targets"]
    lines.append(_check(f"api / raw throughput at {report.concurrency}",
                        report.ratio("throughput", "api", "raw"), API_RAW_THROUGHPUT, True))
    lines.append(_check("api / raw p50, one at a time", report.ratio("p50", "api", "raw"), API_RAW_P50, False))
    if "bare" in report.throughput:
        lines.append(_check(f"api / bare throughput at {report.concurrency}",
                            report.ratio("throughput", "api", "bare"), API_BARE_THROUGHPUT, True))
        lines.append(_check("api / bare p50, one at a time", report.ratio("p50", "api", "bare"), API_BARE_P50, False))
    else:
        lines.append(_check("api p50 ms, one at a time", report.latency["api"].latency_ms(50), BARE_P50_MS, False))
        lines.append(_check(f"api runs/min at {report.concurrency}", report.throughput["api"].throughput * 60,
                            BARE_RUNS_PER_MIN, True))
    r = report.retries
    lines.append(f"  {'no attempt timed out or retried, no workflow task failed':<44}"
                 f"{r.activity_timeouts + r.activity_failures + r.workflow_task_problems:>8}  (in {r.histories} "
                 f"histories: {r.activity_timeouts} activity timeouts, {r.activity_failures} activity failures, "
                 f"{r.workflow_task_problems} workflow task timeouts or failures)  {_verdict(r.clean)}")
    if r.workflow_task_causes:
        lines.append(f"  {'':<44}{'':>8}  workflow task problems by cause: "
                     + ", ".join(f"{cause} {count}" for cause, count in sorted(r.workflow_task_causes.items())))
    if report.workers > 1:
        lines.append(f"  {'every worker took part':<44}{len(r.workers_seen):>8}  (worker processes that completed "
                     f"workflow tasks, of {report.workers})  {_verdict(len(r.workers_seen) == report.workers)}")
    lines += ["", f"resident memory, MiB (worker: {'all ' if report.workers > 1 else ''}{_workers(report)} with "
              "CPU pool and manager)",
              f"  {'after runs':>10}{'worker':>9}{'api':>8}{'server':>9}"]
    for m in report.memory:
        lines.append(f"  {m.runs:>10}{m.rss_mib['worker']:>9.1f}{m.rss_mib['api']:>8.1f}{m.rss_mib['server']:>9.1f}")
    for results in (report.latency, report.throughput):
        for r in results.values():
            lines += [f"{r.name} failure: {f}" for f in r.failures[:3]]
            if len(r.failures) > 3:
                lines.append(f"{r.name}: {len(r.failures) - 3} more failures")
    return "\n".join(lines)


async def _stoppable(work: Awaitable[BenchReport]) -> BenchReport:
    """Cancel `work` on SIGTERM, as asyncio.run does on Ctrl-C, so Steward is stopped either way."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await work
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def main(workflow: str = DEFAULT_WORKFLOW, runs: int = 200, concurrency: int = 50, latency_runs: int = 50,
         warmup: int = 20, cpu_workers: int | None = None, sample: dict[str, Any] | None = None,
         workers: int = 1) -> int:
    """Run the benchmark and print its table; 0 once printed, 1 if it could not be set up."""
    if runs < 1 or concurrency < 1 or latency_runs < 1 or workers < 1 or warmup < 0:
        print("steward bench: --runs, --concurrency, --latency-runs and --workers must be at least 1, --warmup at "
              "least 0",
              file=sys.stderr)
        return 2
    configure_logging("warning", "bench")
    print(f"steward bench: starting a Steward of its own to run {workflow} ...", file=sys.stderr, flush=True)
    try:
        report = asyncio.run(_stoppable(run_benchmark(workflow, runs, concurrency, latency_runs, warmup, cpu_workers,
                                                      sample, workers)))
    except BenchSetupError as exc:
        print(f"steward bench: {exc}", file=sys.stderr)
        return 1
    except asyncio.CancelledError:
        print("steward bench: stopped before the end; nothing measured to report", file=sys.stderr)
        return 1
    print(format_report(report))
    return 0


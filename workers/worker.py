"""One worker process hosting every cataloged workflow and its activities.

A Temporal Worker is created per task queue the catalog names, for its workflows and their
`async def` activities, and one per `<queue>-cpu` for their CPU-bound `def` activities, which run
in a process pool (workers/cpu.py). SIGTERM or SIGINT starts a graceful shutdown: polling stops,
running activity attempts get `worker_grace_s` to finish, and anything cut short is retried by
Temporal on the next worker — nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from typing import Any
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.audit.activity import append_audit_entries
from activities.events.delivery import EVENTS_TASK_QUEUE
from policies import output as output_policy
from policies import rbac, routing
from steward import runtime, temporal_client
from steward.logs import get_logger
from steward.settings import Settings
from workers.audit import AuditInterceptor
from workers.cpu import CpuPool, cpu_pool, is_cpu_bound
from workflows.catalog import Catalog, discover
from workflows.declarative import DECLARATIVE_ACTIVITIES, DeclarativeWorkflow
from workflows.event_delivery import DELIVERY_ACTIVITIES, EventDeliveryWorkflow
from workflows.spec import DEFAULT_TASK_QUEUE, WorkflowSpec
from workflows.spec import cpu_task_queue

log = get_logger(__name__)

# Steward's workflow building blocks: platform code that holds no module state and is replay-
# tested with every workflow using it. The sandbox re-imports every module it does not pass
# through for every workflow run; for these that meant re-running their module bodies and
# rebuilding their pydantic models, a quarter to a third of a compliance run's worker CPU.
# Workflow modules themselves are still re-imported per run, so the sandbox keeps checking the
# code a workflow's author writes. tests/test_layers.py keeps this list and workflows/ in step.
WORKFLOW_BUILDING_BLOCKS = (
    "workflows.approvals", "workflows.artifacts", "workflows.audit", "workflows.catalog", "workflows.cpu_steps",
    "workflows.definition", "workflows.definition_check", "workflows.ladder", "workflows.llm_steps",
    "workflows.metrics", "workflows.notifications", "workflows.saga", "workflows.spec",
    "workflows.stage",
)
# Re-importing these per workflow run inside the sandbox is slow and buys nothing: they hold no
# state a workflow could use to become non-deterministic.
SANDBOX_PASSTHROUGH_MODULES = (
    "pydantic", "pydantic_core", "openai", "structlog", "steward", *WORKFLOW_BUILDING_BLOCKS,
    # pydantic's EmailStr imports these on first use, which inside the sandbox is mid-workflow.
    "email_validator", "idna",
    # A native extension, which cannot be imported a second time into the sandbox's module table.
    "cryptography",
)


# Workflows of the platform itself, hosted beside the catalog's: event delivery (never offered by
# the API), and the interpreter that runs every declarative definition (a dynamic workflow: each
# definition's id is its workflow type, and the definition travels in the run's input).
PLATFORM_WORKFLOWS = (EventDeliveryWorkflow, DeclarativeWorkflow)


def sandbox_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*SANDBOX_PASSTHROUGH_MODULES)
    )


def build_workers(client: Client, catalog: Catalog, *, grace: timedelta, cpu: CpuPool | None,
                  task_queue_activities_per_second: float | None = None, platform: bool = True) -> list[Worker]:
    """One Worker per task queue for its workflows and their `async def` activities, and one per
    `<queue>-cpu` for their CPU-bound (`def`) activities, run in the process pool `cpu`."""
    by_queue = catalog.task_queues()
    if platform:
        by_queue.setdefault(DEFAULT_TASK_QUEUE, [])  # declarative runs need it, even with none cataloged yet
    queues = sorted(by_queue.items())
    # The CPU workers share the pool's processes: together they accept no more than it runs.
    cpu_queues = sum(1 for queue, specs in queues if any(is_cpu_bound(a) for a in _activities(catalog, specs, queue,
                                                                                               platform)))
    # Webhook deliveries on a queue of their own: a backlog of retries never delays a run. Without
    # `platform`, only the catalog's queues (a process adding workflows beside a full worker's).
    workers = [Worker(client, task_queue=EVENTS_TASK_QUEUE, workflows=[EventDeliveryWorkflow],
                      activities=list(DELIVERY_ACTIVITIES), workflow_runner=sandbox_runner(),
                      graceful_shutdown_timeout=grace)] if platform else []
    for task_queue, specs in queues:
        activities = _activities(catalog, specs, task_queue, platform)
        workflows = list(dict.fromkeys(spec.workflow for spec in specs))  # one interpreter for every definition
        if platform and task_queue == DEFAULT_TASK_QUEUE:
            workflows = list(dict.fromkeys([*workflows, DeclarativeWorkflow]))
        workers.append(Worker(
            client,
            task_queue=task_queue,
            workflows=workflows,
            # The audit log's writer runs as a local activity of every workflow (workflows/audit.py).
            activities=[*(a for a in activities if not is_cpu_bound(a)), append_audit_entries],
            interceptors=[AuditInterceptor()],
            workflow_runner=sandbox_runner(),
            graceful_shutdown_timeout=grace,
            max_task_queue_activities_per_second=task_queue_activities_per_second,
        ))
        cpu_bound = [a for a in activities if is_cpu_bound(a)]
        if not cpu_bound:
            continue
        if cpu is None:
            raise ValueError(f"task queue {task_queue!r} has CPU-bound activities but no CPU pool was given")
        workers.append(Worker(
            client,
            task_queue=cpu_task_queue(task_queue),
            activities=cpu_bound,
            activity_executor=cpu.executor,
            shared_state_manager=cpu.shared_state,
            # One slot per process: a burst waits in Temporal's queue, not inside this worker
            # with its start-to-close timeouts running (workers/cpu.py).
            max_concurrent_activities=max(1, cpu.size // cpu_queues),
            graceful_shutdown_timeout=grace,
        ))
    return workers


def _activities(catalog: Catalog, specs: list[WorkflowSpec], task_queue: str, platform: bool) -> list[Any]:
    """A queue's activities: its workflows', and on the default queue of a full worker the blocks
    every declarative definition may call, whether or not one is cataloged yet."""
    activities = catalog.activities_for(specs)
    if platform and task_queue == DEFAULT_TASK_QUEUE:
        activities = list(dict.fromkeys([*activities, *DECLARATIVE_ACTIVITIES]))
    return activities


@contextlib.asynccontextmanager
async def hosting(client: Client, catalog: Catalog, settings: Settings, *, grace: timedelta,
                  task_queue_activities_per_second: float | None = None,
                  platform: bool = True) -> AsyncIterator[list[Worker]]:
    """The workers for every workflow of `catalog`, with the CPU pool their `def` activities need.

    Run them with run_workers; the pool stops after they have shut down.
    """
    everything = [*catalog.activities_for(catalog.specs.values()), *(DECLARATIVE_ACTIVITIES if platform else ())]
    cpu_bound = list(dict.fromkeys(a for a in everything if is_cpu_bound(a)))
    async with contextlib.AsyncExitStack() as stack:
        cpu = await stack.enter_async_context(cpu_pool(settings, cpu_bound)) if cpu_bound else None
        yield build_workers(client, catalog, grace=grace, cpu=cpu, platform=platform,
                            task_queue_activities_per_second=task_queue_activities_per_second)


async def run_workers(workers: list[Worker], stop: asyncio.Event) -> None:
    """Run until `stop` is set, then shut every worker down gracefully."""
    tasks = [asyncio.create_task(w.run()) for w in workers]
    stopped = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*tasks, stopped], return_when=asyncio.FIRST_COMPLETED)
    if stopped not in done:
        # A worker ended on its own (fatal error): stop the rest and let the supervisor restart us.
        stopped.cancel()
    await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
    for task in tasks:
        if task.done() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


async def serve(settings: Settings) -> None:
    runtime.configure(settings)  # what this worker's activities read
    catalog = discover(settings.workflow_packages, settings.definition_dirs)
    # A broken policy file stops the worker now, naming the file, rather than failing runs later.
    output_policy.load(settings.llm_output_policy)
    rbac.check_startup(settings)
    routing.check_startup(settings)
    client = await temporal_client.connect(settings, metrics=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with hosting(
        client, catalog, settings, grace=timedelta(seconds=settings.worker_grace_s),
        task_queue_activities_per_second=settings.worker_task_queue_activities_per_second,
    ) as workers:
        log.info(
            "worker started",
            temporal=settings.temporal_address,
            namespace=settings.temporal_namespace,
            task_queues=sorted(w.task_queue for w in workers),
            workflows=sorted(catalog.specs),
            metrics=settings.worker_metrics_url,
        )
        await run_workers(workers, stop)
    log.info("worker stopped")

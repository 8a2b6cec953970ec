"""CPU-bound activities: a pool of worker processes and a task queue of their own.

An activity written as a plain `def` is CPU work by Steward's convention (rendering a PDF,
parsing a large document, crypto over large data). CPU-bound Python holds the GIL, so in the
worker's event loop or its threads it starves the workflow tasks beside it: Temporal's deadlock
detector fires after 2 s, and activities time out waiting for the loop. Such activities therefore
run in a pool of separate processes, each with its own GIL.

They are also served on a task queue of their own (`<queue>-cpu`, workflows/spec.py), by a
Temporal Worker whose `max_concurrent_activities` equals the pool size. An activity's
start-to-close timeout runs from the moment a worker accepts it, so a worker that accepted more
CPU work than it has processes would let the surplus wait inside the worker, its timeouts
running. With one slot per process, a burst waits in Temporal's task queue instead (shown as
scheduled in the UI, no timeout unless the workflow sets schedule-to-start), and any other
worker process — on this host or another — can serve that queue.

The pool uses the spawn start method: forking a process that runs the Temporal SDK's threads
could copy a lock some thread holds. Pool processes configure the settings and logging of their
parent, ignore Ctrl-C (their parent stops them in order) and exit if their parent dies.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import inspect
import multiprocessing
import multiprocessing.managers
import os
import signal
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from temporalio.worker import SharedStateManager

from steward import runtime
from steward.logs import configure_logging, get_logger
from steward.processes import exit_with_parent
from steward.settings import Settings

log = get_logger(__name__)

_SPAWN = multiprocessing.get_context("spawn")


def is_cpu_bound(activity: Callable[..., Any]) -> bool:
    """A plain `def` activity is CPU work; `async def` ones wait on the outside world."""
    return not inspect.iscoroutinefunction(activity)


def default_size() -> int:
    """One process per core but one: the rest of the worker, the API and Temporal need CPU too."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


@dataclass(frozen=True)
class CpuPool:
    executor: concurrent.futures.ProcessPoolExecutor
    shared_state: SharedStateManager
    size: int


def _start_process(settings: Settings, modules: Sequence[str]) -> None:
    """Run in each pool process as it starts."""
    exit_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(settings.log_level, "worker")
    runtime.configure(settings)
    # Import the activities' modules now, so the first activity does not pay for it.
    for module in modules:
        importlib.import_module(module)


def _ready() -> int:
    return os.getpid()


@contextlib.asynccontextmanager
async def cpu_pool(settings: Settings, activities: Iterable[Callable[..., Any]]) -> AsyncIterator[CpuPool]:
    """A started pool for `activities` (the CPU-bound ones); stopped, with its manager, on exit.

    Leave the context only after every Worker using the pool has shut down.
    """
    size = settings.cpu_workers or default_size()
    modules = sorted({activity.__module__ for activity in activities})
    # Heartbeats and cancellation cross the process boundary through a manager process.
    manager = multiprocessing.managers.SyncManager(ctx=_SPAWN)
    await asyncio.to_thread(manager.start, exit_with_parent)
    executor = concurrent.futures.ProcessPoolExecutor(
        max_workers=size, mp_context=_SPAWN, initializer=_start_process, initargs=(settings, modules)
    )
    try:
        # Start every process now, not at the first activity: a submit that finds no idle
        # process starts one, up to max_workers.
        started = [asyncio.wrap_future(executor.submit(_ready)) for _ in range(size)]
        pids = sorted(set(await asyncio.gather(*started)))
        log.info("cpu pool started", processes=size, pids=pids, activity_modules=modules)
        yield CpuPool(executor, SharedStateManager.create_from_multiprocessing(manager), size)
    finally:
        await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
        await asyncio.to_thread(manager.shutdown)

"""Running a CPU-bound activity from a workflow: on the CPU task queue, in the worker's process pool.

A plain `def` activity (rendering, parsing) is served only on `<queue>-cpu` (workers/cpu.py).
`execute_cpu_activity` sends it there, so a workflow never has to spell the queue's name; an
activity sent to the workflow's own queue instead would find no worker that has it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.spec import cpu_task_queue

ArgT = TypeVar("ArgT")
ResultT = TypeVar("ResultT")


async def execute_cpu_activity(activity: Callable[[ArgT], ResultT], arg: ArgT, *,
                               start_to_close_timeout: timedelta, retry_policy: RetryPolicy) -> ResultT:
    """Run `activity(arg)` on this workflow's CPU task queue.

    `start_to_close_timeout` counts only the work: a burst of runs waits for a free process in
    the task queue, where no timeout runs.
    """
    return await workflow.execute_activity(
        activity, arg,
        task_queue=cpu_task_queue(workflow.info().task_queue),
        start_to_close_timeout=start_to_close_timeout,
        retry_policy=retry_policy,
    )

"""test-cpu-burst: more CPU-bound work at once than the worker has processes.

No module-level WorkflowSpec: tests/test_cpu_activities.py hosts it on a task queue and a CPU
pool of its own, so its figures never depend on the session worker.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import activity, workflow
from temporalio.common import RetryPolicy

from workflows.cpu_steps import execute_cpu_activity


class SpinInput(BaseModel):
    cpu_seconds: float = Field(gt=0, le=5)


class SpinResult(BaseModel):
    pid: int


class BurstInput(BaseModel):
    activities: int = Field(ge=1, le=50)
    cpu_seconds: float
    timeout_s: float


class BurstResult(BaseModel):
    pids: list[int]


@activity.defn(name="test-spin")
def spin(request: SpinInput) -> SpinResult:
    """Pure-Python CPU work for `cpu_seconds` of this process's CPU time: it holds the GIL."""
    end = time.process_time() + request.cpu_seconds
    while time.process_time() < end:
        sum(range(1000))
    return SpinResult(pid=os.getpid())


@workflow.defn(name="test-cpu-burst")
class CpuBurstWorkflow:
    @workflow.run
    async def run(self, request: BurstInput) -> BurstResult:
        # One attempt each: an attempt cancelled by its timeout fails the run.
        once = RetryPolicy(maximum_attempts=1)
        results = await asyncio.gather(*(
            execute_cpu_activity(spin, SpinInput(cpu_seconds=request.cpu_seconds),
                                 start_to_close_timeout=timedelta(seconds=request.timeout_s), retry_policy=once)
            for _ in range(request.activities)
        ))
        return BurstResult(pids=[r.pid for r in results])

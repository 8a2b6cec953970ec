"""test-gated: one activity that waits until the test drops a release file.

Lets a test hold a run mid-activity for as long as it needs (to list it, cancel it, or kill the
worker under it) without sleeping on wall-clock time.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.common import RetryPolicy

from workflows.spec import WorkflowSpec
from workflows.stage import enter_stage

# Short, so a worker killed mid-activity is noticed quickly and the attempt retried elsewhere.
HEARTBEAT_TIMEOUT = timedelta(seconds=2)
WAIT_TIMEOUT = timedelta(minutes=5)
WAIT_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=1))


class GatedInput(BaseModel):
    started_file: str
    release_file: str


class GatedOutput(BaseModel):
    attempts: int


@activity.defn(name="test-wait-for-release")
async def wait_for_release(request: GatedInput) -> GatedOutput:
    info = activity.info()
    Path(request.started_file).write_text(str(info.attempt))
    while not Path(request.release_file).exists():
        activity.heartbeat()
        await asyncio.sleep(0.1)
    return GatedOutput(attempts=info.attempt)


@workflow.defn(name="test-gated")
class GatedWorkflow:
    @workflow.run
    async def run(self, request: GatedInput) -> GatedOutput:
        enter_stage("waiting-for-release")
        return await workflow.execute_activity(
            wait_for_release,
            request,
            start_to_close_timeout=WAIT_TIMEOUT,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=WAIT_RETRY,
        )


SPEC = WorkflowSpec(
    name="test-gated",
    description="Test workflow: waits for a release file.",
    workflow=GatedWorkflow,
    input_model=GatedInput,
    output_model=GatedOutput,
    activities=(wait_for_release,),
)

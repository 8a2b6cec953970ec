"""steward-benchmark: three activity steps, used by `steward bench` and hidden from the catalog."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.spec import WorkflowSpec

with workflow.unsafe.imports_passed_through():
    from activities.benchmark import BenchmarkStepInput, benchmark_step

STEPS = 3
# The step hashes a short string; anything slower than 10 s is a stuck worker.
STEP_TIMEOUT = timedelta(seconds=10)
STEP_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=3)


class BenchmarkInput(BaseModel):
    payload: str = Field("steward", max_length=1000)
    local_activities: bool = Field(
        False, description="Run the three steps as local activities: no task queue round trip per step.")


class BenchmarkOutput(BaseModel):
    digest: str


@workflow.defn(name="steward-benchmark")
class BenchmarkWorkflow:
    @workflow.run
    async def run(self, request: BenchmarkInput) -> BenchmarkOutput:
        payload = request.payload
        # The input chooses, so both kinds replay from the same code: runs recorded without the
        # field take regular activities, as they always did.
        execute = workflow.execute_local_activity if request.local_activities else workflow.execute_activity
        for step in range(STEPS):
            result = await execute(
                benchmark_step,
                BenchmarkStepInput(step=step, payload=payload),
                start_to_close_timeout=STEP_TIMEOUT,
                retry_policy=STEP_RETRY,
            )
            payload = result.digest
        return BenchmarkOutput(digest=payload)


SPEC = WorkflowSpec(
    name="steward-benchmark",
    description="Three-step workflow the benchmark starts; not for users.",
    workflow=BenchmarkWorkflow,
    input_model=BenchmarkInput,
    output_model=BenchmarkOutput,
    activities=(benchmark_step,),
    listed=False,
    sample_input={"payload": "steward"},
)

"""test-failing: fails with a typed business error, as real workflows do on a refusal."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.spec import WorkflowSpec


class FailingInput(BaseModel):
    reason: str


class FailingOutput(BaseModel):
    never: str


@workflow.defn(name="test-failing")
class FailingWorkflow:
    @workflow.run
    async def run(self, request: FailingInput) -> FailingOutput:
        raise ApplicationError(request.reason, type="TestBusinessRefusal", non_retryable=True)


SPEC = WorkflowSpec(
    name="test-failing",
    description="Test workflow: fails with a typed error.",
    workflow=FailingWorkflow,
    input_model=FailingInput,
    output_model=FailingOutput,
)

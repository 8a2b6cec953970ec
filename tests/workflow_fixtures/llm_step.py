"""test-llm-step: one LLM step through the ledger, so tests see what workflows see."""

from __future__ import annotations

from temporalio import workflow

from workflows.spec import WorkflowSpec
from workflows.stage import enter_stage

with workflow.unsafe.imports_passed_through():
    from activities.llm.activity import run_llm_task
    from activities.llm.models import LlmTaskRequest, LlmTaskResult

from workflows.llm_steps import LlmLedger


@workflow.defn(name="test-llm-step")
class LlmStepWorkflow:
    @workflow.run
    async def run(self, request: LlmTaskRequest) -> LlmTaskResult:
        enter_stage("asking-model")
        result = await LlmLedger().run(request)
        enter_stage("needs-review" if result.needs_review else "done")
        return result


SPEC = WorkflowSpec(
    name="test-llm-step",
    description="Test workflow: runs one LLM task.",
    workflow=LlmStepWorkflow,
    input_model=LlmTaskRequest,
    output_model=LlmTaskResult,
    activities=(run_llm_task,),
)

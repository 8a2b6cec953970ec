"""test-approval: asks for one approval and reports its outcome, for approval tests."""

from __future__ import annotations

from pydantic import BaseModel
from temporalio import workflow

from workflows.approvals import APPROVAL_ACTIVITIES, ApprovalOutcome, ApprovalRequest, ApprovalsMixin
from workflows.spec import WorkflowSpec
from workflows.stage import enter_stage


class TestApprovalInput(BaseModel):
    approval: ApprovalRequest


@workflow.defn(name="test-approval")
class TestApprovalWorkflow(ApprovalsMixin):
    @workflow.run
    async def run(self, request: TestApprovalInput) -> ApprovalOutcome:
        enter_stage("review")
        outcome = await self.request_approval(request.approval)
        enter_stage("done")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return outcome


SPEC = WorkflowSpec(
    name="test-approval",
    description="Test workflow: asks for one approval.",
    workflow=TestApprovalWorkflow,
    input_model=TestApprovalInput,
    output_model=ApprovalOutcome,
    activities=APPROVAL_ACTIVITIES,
)

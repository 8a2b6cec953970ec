"""test-channels: one notice to a list of channels, in order, until one delivers."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.notifications import CHANNEL_ACTIVITIES, CHANNEL_RETRY, ChannelTarget, DeliveryRecord, deliver_notice
from workflows.spec import WorkflowSpec

with workflow.unsafe.imports_passed_through():
    from activities.notify.message import ActionRequest, Notice

# The platform's retry policy with quick waits, so a channel that keeps failing costs a test
# a fraction of a second.
FAST_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=100), backoff_coefficient=1.0,
                         maximum_attempts=CHANNEL_RETRY.maximum_attempts,
                         non_retryable_error_types=CHANNEL_RETRY.non_retryable_error_types)


class ChannelsInput(BaseModel):
    targets: list[ChannelTarget]
    title: str = "Disk almost full on db-1"
    with_ack_link: bool = False


class ChannelsOutput(BaseModel):
    records: list[DeliveryRecord]


@workflow.defn(name="test-channels")
class ChannelsWorkflow:
    @workflow.run
    async def run(self, request: ChannelsInput) -> ChannelsOutput:
        info = workflow.info()
        notice = Notice(
            title=request.title, lines=["Free space fell below 5% on /var/lib/postgresql."],
            fields=[("Severity", "critical"), ("Service", "db")],
            action=ActionRequest(action="acknowledge", label="Acknowledge", run_id=info.workflow_id,
                                 tenant=workflow.memo_value("tenant", "")) if request.with_ack_link else None,
        )
        records = await deliver_notice(request.targets, notice, event_type="test.notice", step="page-1",
                                       retry=FAST_RETRY)
        return ChannelsOutput(records=records)


SPEC = WorkflowSpec(
    name="test-channels",
    description="Test workflow: one notice over channels with fallback.",
    workflow=ChannelsWorkflow,
    input_model=ChannelsInput,
    output_model=ChannelsOutput,
    activities=CHANNEL_ACTIVITIES,
)

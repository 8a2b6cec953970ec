"""test-notify: one notification to a callback URL (when given) and the platform's webhook."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.spec import WorkflowSpec

with workflow.unsafe.imports_passed_through():
    from activities.notify.webhook import NON_RETRYABLE, WebhookTarget, deliver_webhook

from workflows.notifications import DELIVERY_RETRY, NotificationRecord, notify

# Three quick attempts, so a test of a failing receiver takes a fraction of a second.
FAST_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    backoff_coefficient=1.0,
    maximum_attempts=3,
    non_retryable_error_types=list(NON_RETRYABLE),
)


class NotifyInput(BaseModel):
    callback_url: str | None = None
    event_type: str = "run.completed"
    data: dict[str, Any] = Field(default_factory=dict)
    fast_retry: bool = False


class NotifyOutput(BaseModel):
    records: list[NotificationRecord]


@workflow.defn(name="test-notify")
class NotifyWorkflow:
    @workflow.run
    async def run(self, request: NotifyInput) -> NotifyOutput:
        targets = [WebhookTarget(kind="callback", url=request.callback_url)] if request.callback_url else []
        targets.append(WebhookTarget(kind="platform"))
        records = await notify(targets, request.event_type, request.data, step="notify",
                               retry=FAST_RETRY if request.fast_retry else DELIVERY_RETRY)
        return NotifyOutput(records=records)


SPEC = WorkflowSpec(
    name="test-notify",
    description="Test workflow: sends one signed webhook notification.",
    workflow=NotifyWorkflow,
    input_model=NotifyInput,
    output_model=NotifyOutput,
    activities=(deliver_webhook,),
)

"""Sending webhook notifications from a workflow, and keeping the run's record of them.

`notify` delivers one event to each target concurrently through the `deliver-webhook` activity
and never raises for a failed delivery: a receiver that is down or refuses the message must not
change a business decision already made. What happened to each delivery is returned and kept in
the run's memo under "notifications", so GET /v1/runs/{id} can show it while the run goes on.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.notify.webhook import (
        NON_RETRYABLE,
        WebhookDeliveryRequest,
        WebhookTarget,
        deliver_webhook,
        target_host,
    )

MEMO_KEY = "notifications"
# Above the activity's own worst case (5 s resolving, 5 s connecting, 10 s each for sending and
# for the answer), so a slow attempt ends with the activity's typed error, not Temporal's timeout.
DELIVERY_TIMEOUT = timedelta(seconds=45)
# Receivers go down for deploys and restarts. Waits of 5, 10, 20 ... s, capped at 5 minutes,
# spread 8 attempts over about 10 minutes: long enough to ride out a deploy, gentle on a receiver
# that is struggling. Refusals and forbidden targets fail the same way every time: not retried.
DELIVERY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=8,
    non_retryable_error_types=list(NON_RETRYABLE),
)


class NotificationRecord(BaseModel):
    """What became of one delivery. Names the target's host only: callback URLs carry tokens."""

    kind: Literal["callback", "platform"]
    target_host: str | None = None
    delivered: bool
    skipped: bool = False
    status_code: int | None = None
    error_type: str | None = None
    error: str | None = None
    attempts: int | None = None


async def notify(targets: list[WebhookTarget], event_type: str, data: dict[str, Any], step: str,
                 retry: RetryPolicy = DELIVERY_RETRY) -> list[NotificationRecord]:
    """Deliver `event_type` with `data` to every target; one record per target, in order.

    The message id is workflow id + step + target kind: the same on every retry and on replay,
    so a receiver that already has the message can drop the duplicate.
    """
    workflow_id = workflow.info().workflow_id
    occurred_at = workflow.now()
    requests = [
        WebhookDeliveryRequest(target=target, message_id=f"{workflow_id}:{step}:{target.kind}",
                               event_type=event_type, data=data, occurred_at=occurred_at)
        for target in targets
    ]
    records = list(await asyncio.gather(*(_deliver(request, step, retry) for request in requests)))
    kept = [*workflow.memo_value(MEMO_KEY, default=[]), *(r.model_dump(mode="json") for r in records)]
    workflow.upsert_memo({MEMO_KEY: kept})
    return records


async def _deliver(request: WebhookDeliveryRequest, step: str, retry: RetryPolicy) -> NotificationRecord:
    target = request.target
    try:
        result = await workflow.execute_activity(
            deliver_webhook, request, start_to_close_timeout=DELIVERY_TIMEOUT, retry_policy=retry,
        )
    except ActivityError as err:
        cause = err.cause
        if isinstance(cause, CancelledError):
            raise  # the run is being cancelled: that is not a delivery failure to swallow
        details: dict[str, Any] = {}
        if isinstance(cause, ApplicationError) and cause.details and isinstance(cause.details[0], dict):
            details = cause.details[0]
        if isinstance(cause, ApplicationError):
            error_type = cause.type
        else:
            error_type = type(cause).__name__ if cause is not None else type(err).__name__
        record = NotificationRecord(
            kind=target.kind,
            target_host=details.get("target_host") or target_host(target.url),
            delivered=False,
            error_type=error_type,
            error=cause.message if cause is not None else err.message,
            attempts=details.get("attempt"),
        )
        workflow.logger.warning("notification not delivered", extra={
            "step": step, "target_kind": target.kind, "target_host": record.target_host,
            "error_type": record.error_type, "attempts": record.attempts,
        })
        return record
    return NotificationRecord(kind=target.kind, target_host=result.target_host, delivered=result.delivered,
                              skipped=result.skipped, status_code=result.status_code, attempts=result.attempt)

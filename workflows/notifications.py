"""Sending webhook notifications from a workflow, and keeping the run's record of them.

`notify` delivers one event to each target concurrently through the `deliver-webhook` activity
and never raises for a failed delivery: a receiver that is down or refuses the message must not
change a business decision already made. What happened to each delivery is returned and kept in
the run's memo under "notifications", so GET /v1/runs/{id} can show it while the run goes on.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.notify import email, slack
    from activities.notify.email import EmailDeliveryRequest, deliver_email
    from activities.notify.message import Notice
    from activities.notify.slack import SlackDeliveryRequest, deliver_slack
    from activities.notify.webhook import (
        NON_RETRYABLE,
        WebhookDeliveryRequest,
        WebhookTarget,
        deliver_webhook,
        target_host,
    )

from workflows import audit, metrics

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
    for r in records:
        _counted(f"webhook-{r.kind}", r.delivered, r.skipped)
    await _audit(*(audit.AuditEvent(
        event_id=audit.numbered("notification"), kind=_audit_kind(r.delivered, r.skipped),
        data={"event_type": event_type, "step": step, **r.model_dump(mode="json", exclude={"error"})},
    ) for r in records))
    return records


async def _audit(*events: audit.AuditEvent) -> None:
    """Runs since events exist write deliveries with whatever the run records next (its next stage,
    its end): a write fewer per notification. Runs from before wrote them at once."""
    if audit.evented():
        audit.record_soon(*events)
    else:
        await audit.record(*events)


def _counted(channel: str, delivered: bool, skipped: bool) -> None:
    metrics.count("steward_notifications", "Messages tried, by channel and outcome.", channel=channel,
                  outcome="delivered" if delivered else "skipped" if skipped else "failed")


def _audit_kind(delivered: bool, skipped: bool) -> str:
    return "notification.delivered" if delivered else "notification.skipped" if skipped else "notification.undelivered"


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


# --- Messages for people, on the channels a workflow names, with fallback ---------------------

Channel = Literal["email", "slack", "webhook"]
# Every channel activity, for a workflow spec's `activities`.
CHANNEL_ACTIVITIES = (deliver_email, deliver_slack, deliver_webhook)
# A person is waiting on this message: three attempts over about half a minute, then the next
# channel, rather than ten minutes of patience with one.
CHANNEL_TIMEOUT = timedelta(seconds=45)
CHANNEL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=20),
    maximum_attempts=3, non_retryable_error_types=[*NON_RETRYABLE, *email.NON_RETRYABLE, *slack.NON_RETRYABLE],
)


class ChannelTarget(BaseModel):
    """One way to reach someone: e-mail to an address, the Slack channel, or the platform webhook."""

    channel: Channel
    to: str | None = Field(None, max_length=320, description="email: the address.")

    @property
    def recipient(self) -> str:
        return self.to if self.channel == "email" and self.to else self.channel


class DeliveryRecord(BaseModel):
    """What became of one message on one channel."""

    channel: Channel
    recipient: str
    at: datetime
    delivered: bool
    skipped: bool = False
    error_type: str | None = None
    error: str | None = None
    attempts: int | None = None


async def deliver_notice(targets: list[ChannelTarget], notice: Notice, *, event_type: str, step: str,
                         retry: RetryPolicy = CHANNEL_RETRY) -> list[DeliveryRecord]:
    """Send `notice` on the first of `targets` that works, in order: a channel that still fails
    after its retries falls through to the next. One record per channel tried; never raises for
    a failed delivery (the caller decides what an undelivered message means)."""
    records: list[DeliveryRecord] = []
    for target in targets:
        record = await _deliver_on(target, notice, event_type=event_type, step=step, retry=retry)
        records.append(record)
        if record.delivered:
            break
    for r in records:
        _counted(r.channel, r.delivered, r.skipped)
    # An e-mail address is personal: the log keeps its digest.
    await _audit(*(audit.AuditEvent(
        event_id=audit.numbered("notification"), kind=_audit_kind(r.delivered, r.skipped),
        data={"event_type": event_type, "step": step, "channel": r.channel,
              "recipient_sha256": audit.digest(r.recipient), "delivered": r.delivered, "skipped": r.skipped,
              "error_type": r.error_type, "attempts": r.attempts},
    ) for r in records))
    return records


async def _deliver_on(target: ChannelTarget, notice: Notice, *, event_type: str, step: str,
                      retry: RetryPolicy) -> DeliveryRecord:
    message_id = f"{workflow.info().workflow_id}:{step}:{target.recipient}"
    now = workflow.now()
    options: dict[str, Any] = {"start_to_close_timeout": CHANNEL_TIMEOUT, "retry_policy": retry,
                               "summary": f"{step}: {target.channel}"}  # what the Temporal UI shows
    try:
        if target.channel == "email":
            if not target.to:
                return DeliveryRecord(channel="email", recipient="email", at=now, delivered=False,
                                      error_type=email.EMAIL_MISCONFIGURED, error="no address to send to")
            result = await workflow.execute_activity(deliver_email, EmailDeliveryRequest(
                message_id=message_id, to=target.to, notice=notice, occurred_at=now), **options)
            return DeliveryRecord(channel="email", recipient=target.to, at=now, delivered=True, attempts=result.attempt)
        if target.channel == "slack":
            result = await workflow.execute_activity(deliver_slack, SlackDeliveryRequest(notice=notice), **options)
            return DeliveryRecord(channel="slack", recipient="slack", at=now, delivered=True, attempts=result.attempt)
        data = {"title": notice.title, "lines": notice.lines, "fields": dict(notice.fields),
                "links": [link.model_dump() for link in notice.links]}
        delivered = await workflow.execute_activity(deliver_webhook, WebhookDeliveryRequest(
            target=WebhookTarget(kind="platform"), message_id=message_id, event_type=event_type, data=data,
            occurred_at=now), **options)
        # No platform webhook configured is not a delivery: fall through to the next channel.
        return DeliveryRecord(channel="webhook", recipient="webhook", at=now, delivered=delivered.delivered,
                              skipped=delivered.skipped, attempts=delivered.attempt,
                              error="no platform webhook is configured" if delivered.skipped else None)
    except ActivityError as err:
        cause = err.cause
        if isinstance(cause, CancelledError):
            raise
        details = cause.details[0] if isinstance(cause, ApplicationError) and cause.details else {}
        record = DeliveryRecord(
            channel=target.channel, recipient=target.recipient, at=now, delivered=False,
            error_type=cause.type if isinstance(cause, ApplicationError) else type(cause or err).__name__,
            error=cause.message if cause is not None else err.message,
            attempts=details.get("attempt") if isinstance(details, dict) else None,
        )
        workflow.logger.warning("message not delivered on this channel", extra={
            "step": step, "channel": target.channel, "error_type": record.error_type, "attempts": record.attempts})
        return record

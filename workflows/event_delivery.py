"""The delivery workflow: one subscription's events of one run, delivered in order.

Dispatch (activities/events/delivery.py) signals-with-start it for every event the subscription
wants. It sends one event at a time, in the order they were dispatched, each with Temporal's
retries for up to a day, so a receiver that is down receives everything, in order, when it is
back; a worker or server restart in between loses nothing (the queue is workflow state). When a
receiver answers 410 Gone, or an event still fails after a day, the subscription is disabled and
the tenant told; the rest of the queue is then skipped (logged, redeliverable). A minute after
its queue empties, the workflow ends; the next event starts it again.

It is a platform workflow, not a cataloged one: nobody starts it through the API. It runs on its
own task queue, so a backlog of deliveries never delays runs.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.events.delivery import (
        DELIVER_SIGNAL,
        DELIVERY_WORKFLOW,
        SUBSCRIPTION_GONE,
        SUBSCRIPTION_INACTIVE,
        DeliveryAttempt,
        DeliveryBatch,
        DeliveryItem,
        DeliveryTarget,
        DisableRequest,
        deliver_event,
        disable_subscription,
    )

# One attempt: above the webhook client's own worst case (5 s resolving, 5 s connecting, 10 s
# for the answer) and the delivery log's writes; also how long an attempt lost with its worker
# (killed mid-request) waits before it is retried.
ATTEMPT_TIMEOUT = timedelta(seconds=30)
# Up to a day of retries, 5 s, 10 s, 20 s ... doubling up to hourly: quick for a blip, patient
# for an outage, gentle on a receiver that is struggling. Past it the subscription is disabled.
DELIVERY_WINDOW = timedelta(days=1)
DELIVERY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), backoff_coefficient=2.0,
                             maximum_interval=timedelta(hours=1), maximum_attempts=0,
                             non_retryable_error_types=[SUBSCRIPTION_GONE, SUBSCRIPTION_INACTIVE])
# Disabling writes the delivery log and the audit log: local and quick, retried until done.
DISABLE_TIMEOUT = timedelta(seconds=30)
DISABLE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
# How long an idle workflow waits for its run's next event before ending.
IDLE = timedelta(minutes=1)


class DeliverySummary(BaseModel):
    delivered: int
    not_delivered: int


@workflow.defn(name=DELIVERY_WORKFLOW)
class EventDeliveryWorkflow:
    def __init__(self) -> None:
        self.pending: list[DeliveryItem] = []
        self.seen: set[str] = set()

    @workflow.signal(name=DELIVER_SIGNAL)
    def deliver(self, batch: DeliveryBatch) -> None:
        for item in batch.items:
            if item.force or item.delivery_id not in self.seen:
                self.seen.add(item.delivery_id)
                self.pending.append(item)

    @workflow.run
    async def run(self, target: DeliveryTarget) -> DeliverySummary:
        self.pending = [*target.pending, *self.pending]  # what a run continued-as-new carried
        self.seen |= set(target.seen)
        delivered = not_delivered = 0
        while True:
            try:
                await workflow.wait_condition(lambda: bool(self.pending), timeout=IDLE)
            except TimeoutError:
                if not self.pending:
                    break
            item = self.pending.pop(0)
            if await self._deliver(target, item):
                delivered += 1
            else:
                not_delivered += 1
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(target.model_copy(update={"pending": self.pending, "seen": sorted(self.seen)}))
        return DeliverySummary(delivered=delivered, not_delivered=not_delivered)

    async def _deliver(self, target: DeliveryTarget, item: DeliveryItem) -> bool:
        try:
            await workflow.execute_activity(
                deliver_event, DeliveryAttempt(subscription_id=target.subscription_id, delivery_id=item.delivery_id,
                                               force=item.force),
                start_to_close_timeout=ATTEMPT_TIMEOUT, schedule_to_close_timeout=DELIVERY_WINDOW,
                retry_policy=DELIVERY_RETRY,
            )
            return True
        except ActivityError as error:
            cause = error.cause
            if isinstance(cause, CancelledError):
                raise
            if isinstance(cause, ApplicationError) and cause.type == SUBSCRIPTION_INACTIVE:
                return False  # paused, disabled or deleted: the activity logged it as skipped
            gone = isinstance(cause, ApplicationError) and cause.type == SUBSCRIPTION_GONE
            if gone:
                reason = "the receiver answered 410 Gone"
            elif isinstance(cause, ApplicationError) and cause.non_retryable:
                reason = cause.message  # the URL is refused now (the SSRF guard): it will not heal
            else:
                reason = f"an event could not be delivered for {DELIVERY_WINDOW.days} day(s)"
            workflow.logger.warning("disabling a subscription", extra={
                "subscription_id": target.subscription_id, "delivery_id": item.delivery_id, "reason": reason})
            await workflow.execute_local_activity(
                disable_subscription, DisableRequest(subscription_id=target.subscription_id,
                                                     delivery_id=item.delivery_id, reason=reason),
                start_to_close_timeout=DISABLE_TIMEOUT, retry_policy=DISABLE_RETRY,
            )
            return False


# What the worker hosts on the events task queue (workers/worker.py).
DELIVERY_ACTIVITIES = (deliver_event, disable_subscription)

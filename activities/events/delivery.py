"""Delivering events to webhook subscriptions: the dispatch that follows every audit write, and
the activities the delivery workflow (workflows/event_delivery.py) runs.

Dispatch: when the audit activity has written a run's entries, `dispatch` finds the tenant's
subscriptions (and the run's callback) that want each event, logs a delivery row per pair, and
signals-with-start the delivery workflow of that subscription and run. It runs inside the audit
activity, whose retries (until it succeeds) make it durable: an event written is an event
dispatched, and dispatching again finds the same delivery rows. The workflow delivers its run's
events one at a time, in order, with Temporal's retries; the delivery log skips what already
arrived, so an event reaches a receiver once per id however often it is dispatched.

One attempt is one signed POST (Standard Webhooks, by the reference library, one signature per
live secret), through the same SSRF guard as every webhook (activities/notify/webhook.py). The
body is `{"type", "timestamp", "data": <the event>}`, and `webhook-id` is the event's id.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from pathlib import Path

from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from activities.audit.log import AuditEntry, AuditLog
from activities.events.feed import RunSequences
from activities.events.model import event_of
from activities.events.subscriptions import SubscriptionStore
from activities.notify.webhook import (
    WEBHOOK_RATE_LIMITED,
    WEBHOOK_UNAVAILABLE,
    envelope,
    send_checked,
    sign,
    signed_headers,
    target_host,
)
from activities.llm.providers.openai_compatible import retry_after
from steward import runtime
from steward.codec import encrypting_for
from steward.logs import get_logger
from steward.settings import Settings

log = get_logger(__name__)

EVENTS_TASK_QUEUE = "steward-events"
DELIVERY_WORKFLOW = "event-delivery"
DELIVER_SIGNAL = "steward.deliver"
# ApplicationError types the delivery workflow matches.
SUBSCRIPTION_GONE = "SubscriptionGone"  # the receiver answered 410: disable, never retry
SUBSCRIPTION_INACTIVE = "SubscriptionInactive"  # paused, disabled or deleted since: nothing to send


class DeliveryItem(BaseModel):
    delivery_id: str
    force: bool = False  # a redelivery: send even when it arrived before


class DeliveryBatch(BaseModel):
    items: list[DeliveryItem]


class DeliveryTarget(BaseModel):
    """The delivery workflow's input: whose events, for which run (None: the tenant's own events),
    and what a run continued-as-new carries on with."""

    subscription_id: str
    run_id: str | None
    pending: list[DeliveryItem] = Field(default_factory=list)
    seen: list[str] = Field(default_factory=list)


class DeliveryAttempt(BaseModel):
    subscription_id: str
    delivery_id: str
    force: bool = False


class DeliveryOutcome(BaseModel):
    delivered: bool
    status_code: int | None = None
    already: bool = False  # it had arrived before: nothing sent


class DisableRequest(BaseModel):
    subscription_id: str
    delivery_id: str
    reason: str


class Disabled(BaseModel):
    disabled: bool


def delivery_workflow_id(subscription_id: str, run_id: str | None) -> str:
    return f"steward-delivery/{subscription_id}/{run_id or '-tenant-'}"


_stores: dict[Path, SubscriptionStore] = {}


def subscription_store(settings: Settings) -> SubscriptionStore:
    """This process's store for the data dir: the keyring is read once."""
    store = _stores.get(settings.subscriptions_db_path)
    if store is None:
        store = _stores[settings.subscriptions_db_path] = SubscriptionStore(settings, runtime.keyring())
    return store


# --- dispatch ---------------------------------------------------------------------------------

def plan_deliveries(store: SubscriptionStore, audit: AuditLog, tenant: str,
                    entries: list[AuditEntry]) -> dict[tuple[str, str | None], list[DeliveryItem]]:
    """The deliveries `entries` call for, logged, by (subscription, run). Blocking: run it in a thread."""
    planned: dict[tuple[str, str | None], list[DeliveryItem]] = defaultdict(list)
    interests: dict[str | None, list] = {}
    sequences: RunSequences | None = None
    for entry in entries:
        draft = event_of(entry, 0)  # its type, to see whether anyone wants it before numbering it
        if draft is None:
            continue
        if entry.run_id not in interests:
            interests[entry.run_id] = store.interested(tenant, entry.run_id)
        wanting = [i for i in interests[entry.run_id] if i.wants(draft)]
        if not wanting:
            continue
        sequences = sequences or RunSequences(audit, tenant)
        event = sequences.event(entry)
        if event is None:
            continue
        for subscription_id, delivery_id in store.record_deliveries(wanting, event):
            planned[(subscription_id, entry.run_id)].append(DeliveryItem(delivery_id=delivery_id))
    return planned


async def signal_deliveries(client: Client, planned: dict[tuple[str, str | None], list[DeliveryItem]]) -> None:
    for (subscription_id, run_id), items in planned.items():
        await client.start_workflow(
            DELIVERY_WORKFLOW, DeliveryTarget(subscription_id=subscription_id, run_id=run_id),
            id=delivery_workflow_id(subscription_id, run_id), task_queue=EVENTS_TASK_QUEUE,
            start_signal=DELIVER_SIGNAL, start_signal_args=[DeliveryBatch(items=items)],
            static_summary=f"Events of {run_id or 'the tenant'} to {subscription_id}",
        )


async def dispatch(store: SubscriptionStore, audit: AuditLog, tenant: str, entries: list[AuditEntry],
                   client: Client | None = None) -> None:
    """Hand `entries`' events to the subscriptions that want them (signalling through `client`,
    else the running activity's). Raises when Temporal cannot be reached: the caller's retry
    dispatches again, and finds the deliveries it logged."""
    if not store.path.exists():
        return  # nobody ever subscribed: every audit write takes this path, so no thread hop for it
    planned = await asyncio.to_thread(plan_deliveries, store, audit, tenant, entries)
    if planned:
        with encrypting_for(tenant):  # the deliveries' payloads are the tenant's, like its runs'
            await signal_deliveries(client or activity.client(), planned)


# --- delivering -------------------------------------------------------------------------------

def _inactive(message: str) -> ApplicationError:
    return ApplicationError(message, type=SUBSCRIPTION_INACTIVE, non_retryable=True)


@activity.defn(name="deliver-event")
async def deliver_event(request: DeliveryAttempt) -> DeliveryOutcome:
    settings = runtime.settings()
    store = subscription_store(settings)
    target = await asyncio.to_thread(store.target, request.subscription_id, settings.webhook_signing_secret)
    pending = await asyncio.to_thread(store.pending_event, request.delivery_id)
    if target is None or pending is None:
        raise _inactive("the subscription was deleted")
    event, status = pending
    if status == "delivered" and not request.force:
        return DeliveryOutcome(delivered=True, already=True)
    if target.status != "active":
        await asyncio.to_thread(store.set_delivery, request.delivery_id, "skipped",
                                f"the subscription was {target.status}")
        raise _inactive(f"the subscription is {target.status}")
    host = target_host(target.url)
    bound = log.bind(subscription_id=target.subscription_id, delivery_id=request.delivery_id, event_id=event.id,
                     event_type=event.type, target_host=host, attempt=activity.info().attempt)
    started = time.perf_counter()

    async def attempted(status_code: int | None, error: str | None, outcome: str | None = None,
                        reason: str | None = None) -> None:
        latency_ms = (time.perf_counter() - started) * 1000
        await asyncio.to_thread(store.record_attempt, request.delivery_id, status_code, latency_ms, error,
                                outcome, reason)  # type: ignore[arg-type]

    try:
        timestamp = int(time.time())
        body = envelope(event.type, event.occurred_at, event.model_dump(mode="json"))
        answer = await send_checked(
            "POST", target.url, content=body, allow_private=settings.notify_allow_private_networks,
            headers=signed_headers(event.id, timestamp, sign(target.secrets, event.id, timestamp, body)))
    except ApplicationError as error:
        final = error.non_retryable
        await attempted(None, error.message, "failed" if final else None, error.message if final else None)
        bound.warning("event not delivered", error_type=error.type, reason=error.message)
        raise
    status_code, response_headers = answer.status_code, answer.headers
    if 200 <= status_code < 300:
        await attempted(status_code, None, "delivered")
        bound.info("event delivered", status_code=status_code)
        return DeliveryOutcome(delivered=True, status_code=status_code)
    if status_code == 410:
        reason = "the receiver answered 410 Gone"
        await attempted(status_code, reason, "failed", reason)
        bound.warning("event not delivered: the receiver is gone", status_code=status_code)
        raise ApplicationError(reason, type=SUBSCRIPTION_GONE, non_retryable=True)
    # Anything else is retried, 4xx included: a receiver that rejects for a while (a deploy, a
    # secret being rotated) is better retried than silently dropped; a day of it disables.
    error_text = f"the receiver answered {status_code}"
    await attempted(status_code, error_text)
    bound.warning("event not delivered", status_code=status_code)
    raise ApplicationError(error_text, type=WEBHOOK_RATE_LIMITED if status_code == 429 else WEBHOOK_UNAVAILABLE,
                           next_retry_delay=retry_after(response_headers) if status_code == 429 else None)


@activity.defn(name="disable-subscription")
async def disable_subscription(request: DisableRequest) -> Disabled:
    """After a 410 or a day of failures: mark the delivery failed, disable the subscription, and
    tell the tenant (a `subscription.disabled` event, to its streams and other subscriptions, and
    a log line). Safe to repeat."""
    settings = runtime.settings()
    store = subscription_store(settings)
    target = await asyncio.to_thread(store.target, request.subscription_id, settings.webhook_signing_secret)
    await asyncio.to_thread(store.set_delivery, request.delivery_id, "failed", request.reason)
    if target is None or target.kind != "subscription":
        return Disabled(disabled=False)  # deleted, or a run's callback: nothing to disable
    disabled = await asyncio.to_thread(store.disable, request.subscription_id, request.reason)
    from activities.audit.activity import worker_audit_log  # imports this module: here, not at the top

    audit = worker_audit_log(settings)
    entry = await asyncio.to_thread(
        audit.append, target.tenant, f"subscription/{request.subscription_id}/disabled/{request.delivery_id}",
        "subscription.disabled", data={"subscription_id": request.subscription_id, "reason": request.reason})
    if disabled:
        log.warning("webhook subscription disabled", tenant=target.tenant, subscription_id=request.subscription_id,
                    reason=request.reason)
    await dispatch(store, audit, target.tenant, [entry])
    return Disabled(disabled=disabled)


__all__ = ["DELIVER_SIGNAL", "DELIVERY_WORKFLOW", "EVENTS_TASK_QUEUE", "SUBSCRIPTION_GONE", "SUBSCRIPTION_INACTIVE",
           "DeliveryAttempt", "DeliveryBatch", "DeliveryItem", "DeliveryOutcome", "DeliveryTarget",
           "DisableRequest", "Disabled", "deliver_event", "disable_subscription", "dispatch"]

"""Webhook subscriptions: a tenant's receivers of its events, and their delivery log.

Every route needs `subscriptions:manage` (admins by default) and sees only the caller's tenant's
subscriptions: another tenant's id is a 404. A subscription's signing secret is shown once, when
it is created or rotated; the store keeps it encrypted (activities/events/subscriptions.py).
Deliveries are made by the workers (activities/events/delivery.py, workflows/event_delivery.py).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Query, Response
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field
from temporalio.exceptions import ApplicationError

from activities.events.delivery import DeliveryItem, signal_deliveries
from activities.events.model import TYPES
from activities.events.subscriptions import Delivery, Subscription, SubscriptionNotFound
from activities.notify.webhook import WEBHOOK_TARGET_FORBIDDEN, checked_destination, target_host
from api.deps import CatalogDep, ClientDep, SettingsDep, SubscriptionsDep, require
from api.errors import ApiError, ErrorResponse
from api.models import EventTypeFilter, WorkflowName
from steward.logs import get_logger
from steward.identity import Principal
from workflows.catalog import Catalog

log = get_logger(__name__)
router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])
T = TypeVar("T")

Manager = Annotated[Principal, Depends(require("subscriptions:manage"))]
_ERRORS = {code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422)}
ALL_TYPES = "*"
MAX_DELIVERIES_PAGE = 100
# Far more receivers than a tenant needs (one per service that follows it); the list is one page.
MAX_SUBSCRIPTIONS_PER_TENANT = 100
MAX_FILTERS = 50


class SubscriptionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: AnyHttpUrl = Field(description="Where events are POSTed: https, on a public address.")
    event_types: list[EventTypeFilter] = Field(min_length=1, max_length=MAX_FILTERS,
                                               description="Types from GET /v1/events/types, or \"*\" for all.")
    workflows: list[WorkflowName] = Field(default_factory=list, max_length=MAX_FILTERS,
                                          description="Only these workflows' events; empty: all.")
    description: str | None = Field(None, max_length=500)


class SubscriptionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: AnyHttpUrl | None = None
    event_types: list[EventTypeFilter] | None = Field(None, min_length=1, max_length=MAX_FILTERS)
    workflows: list[WorkflowName] | None = Field(None, max_length=MAX_FILTERS)
    description: str | None = Field(None, max_length=500)


class PauseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=500, description="Shown as the subscription's status_reason.")


class SubscriptionWithSecret(BaseModel):
    subscription: Subscription
    secret: str = Field(description="The whsec_ signing secret: shown this once. Verify deliveries with it.")


class SubscriptionList(BaseModel):
    subscriptions: list[Subscription]


class DeliveryPage(BaseModel):
    deliveries: list[Delivery]
    next_before: str | None = Field(description="Pass as `before` for older deliveries; None at the oldest.")


class RedeliveryAccepted(BaseModel):
    delivery_id: str
    status: str = "queued"


async def _or_404(subscription_id: str, work: Awaitable[T]) -> T:
    """`work`'s answer, or 404 for a subscription that is not the caller's tenant's (or none)."""
    try:
        return await work
    except SubscriptionNotFound:
        raise ApiError(404, "not_found", f"subscription {subscription_id!r} not found") from None


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "validation_failed", f"request is not valid: {field}", [{"field": field, "message": message}])


def _check_filters(event_types: list[str] | None, workflows: list[str] | None, catalog: Catalog) -> None:
    for event_type in event_types or ():
        if event_type != ALL_TYPES and event_type not in TYPES:
            raise _invalid("event_types", f"unknown event type {event_type!r}; GET /v1/events/types lists them")
    for name in workflows or ():
        if catalog.get(name) is None:
            raise _invalid("workflows", f"no workflow named {name!r}")


async def _check_url(url: AnyHttpUrl | None, allow_private: bool) -> str | None:
    """The URL as text, unless the guard every delivery passes refuses it already: a URL that is not
    https, or a host that resolves to an internal address. A host that does not resolve now is
    accepted: DNS may be having a bad minute, and each delivery resolves and checks again."""
    if url is None:
        return None
    text = str(url)
    try:
        await checked_destination(text, target_host(text), allow_private)
    except ApplicationError as error:
        if error.type == WEBHOOK_TARGET_FORBIDDEN:
            raise _invalid("url", error.message) from None
        log.info("subscription host does not resolve now; deliveries will try", target_host=target_host(text))
    return text


@router.post("", status_code=201, response_model=SubscriptionWithSecret, responses=_ERRORS)
async def create_subscription(body: SubscriptionRequest, principal: Manager, store: SubscriptionsDep,
                              catalog: CatalogDep, settings: SettingsDep, response: Response) -> SubscriptionWithSecret:
    """Subscribe a URL to the tenant's events. The answer holds the signing secret, once."""
    _check_filters(body.event_types, body.workflows, catalog)
    url = await _check_url(body.url, settings.notify_allow_private_networks)
    assert url is not None
    if len(await store.list(principal.tenant)) >= MAX_SUBSCRIPTIONS_PER_TENANT:
        raise ApiError(409, "too_many_subscriptions", f"a tenant may have {MAX_SUBSCRIPTIONS_PER_TENANT} "
                       "subscriptions; delete one, or subscribe one receiver to more event types")
    subscription, secret = await store.create(principal.tenant, url=url, event_types=sorted(set(body.event_types)),
                                              workflows=sorted(set(body.workflows)), description=body.description,
                                              created_by=principal.sub)
    response.headers["Location"] = f"/v1/subscriptions/{subscription.id}"
    return SubscriptionWithSecret(subscription=subscription, secret=secret)


@router.get("", response_model=SubscriptionList, responses=_ERRORS)
async def list_subscriptions(principal: Manager, store: SubscriptionsDep) -> SubscriptionList:
    return SubscriptionList(subscriptions=await store.list(principal.tenant))


@router.get("/{subscription_id}", response_model=Subscription, responses=_ERRORS)
async def get_subscription(subscription_id: str, principal: Manager, store: SubscriptionsDep) -> Subscription:
    return await _or_404(subscription_id, store.get(principal.tenant, subscription_id))


@router.patch("/{subscription_id}", response_model=Subscription, responses=_ERRORS)
async def update_subscription(subscription_id: str, body: SubscriptionUpdate, principal: Manager,
                              store: SubscriptionsDep, catalog: CatalogDep, settings: SettingsDep) -> Subscription:
    _check_filters(body.event_types, body.workflows, catalog)
    url = await _check_url(body.url, settings.notify_allow_private_networks)
    return await _or_404(subscription_id, store.update(
        principal.tenant, subscription_id, url=url,
        event_types=sorted(set(body.event_types)) if body.event_types is not None else None,
        workflows=sorted(set(body.workflows)) if body.workflows is not None else None,
        description=body.description))


@router.post("/{subscription_id}/pause", response_model=Subscription, responses=_ERRORS)
async def pause_subscription(subscription_id: str, principal: Manager, store: SubscriptionsDep,
                             body: PauseRequest | None = None) -> Subscription:
    """Stop delivering: events from now on are logged as skipped (redeliverable), not sent."""
    reason = (body.reason if body else None) or f"paused by {principal.sub}"
    return await _or_404(subscription_id, store.update(principal.tenant, subscription_id, status="paused",
                                                       status_reason=reason))


@router.post("/{subscription_id}/resume", response_model=Subscription, responses=_ERRORS)
async def resume_subscription(subscription_id: str, principal: Manager, store: SubscriptionsDep) -> Subscription:
    """Deliver again, also after the platform disabled it (a 410, or a day of failures)."""
    return await _or_404(subscription_id, store.update(principal.tenant, subscription_id, status="active",
                                                       status_reason=None))


@router.post("/{subscription_id}/rotate-secret", response_model=SubscriptionWithSecret, responses=_ERRORS)
async def rotate_secret(subscription_id: str, principal: Manager, store: SubscriptionsDep) -> SubscriptionWithSecret:
    """A new signing secret, shown once. Until `previous_secret_valid_until` every delivery carries
    two signatures, the new secret's and the old one's, so receivers switch when they are ready."""
    subscription, secret = await _or_404(subscription_id, store.rotate_secret(principal.tenant, subscription_id))
    return SubscriptionWithSecret(subscription=subscription, secret=secret)


@router.delete("/{subscription_id}", status_code=204, responses=_ERRORS)
async def delete_subscription(subscription_id: str, principal: Manager, store: SubscriptionsDep) -> Response:
    await _or_404(subscription_id, store.delete(principal.tenant, subscription_id))
    return Response(status_code=204)


@router.get("/{subscription_id}/deliveries", response_model=DeliveryPage, responses=_ERRORS)
async def list_deliveries(
    subscription_id: str, principal: Manager, store: SubscriptionsDep,
    limit: Annotated[int, Query(ge=1, le=MAX_DELIVERIES_PAGE)] = 20,
    before: Annotated[str | None, Query(max_length=64, description="A delivery id: older ones than it.")] = None,
) -> DeliveryPage:
    """The newest deliveries first, each with its attempts: time, status code, latency, error."""
    deliveries = await _or_404(subscription_id, store.deliveries(principal.tenant, subscription_id, limit=limit,
                                                                 before=before))
    return DeliveryPage(deliveries=deliveries, next_before=deliveries[-1].id if len(deliveries) == limit else None)


@router.post("/{subscription_id}/deliveries/{delivery_id}/redeliver", status_code=202,
             response_model=RedeliveryAccepted, responses=_ERRORS)
async def redeliver(subscription_id: str, delivery_id: str, principal: Manager, store: SubscriptionsDep,
                    client: ClientDep) -> RedeliveryAccepted:
    """Send the event again, whatever became of it before (same webhook-id: receivers may drop it)."""
    try:
        subscription = await store.get(principal.tenant, subscription_id)
        delivery = await store.delivery(principal.tenant, subscription_id, delivery_id)
    except SubscriptionNotFound:
        raise ApiError(404, "not_found", f"delivery {delivery_id!r} of subscription {subscription_id!r} not found") \
            from None
    if subscription.status != "active":
        raise ApiError(409, "subscription_not_active",
                       f"the subscription is {subscription.status}: resume it first")
    await store.reset_delivery(delivery.id)
    await signal_deliveries(client, {(subscription_id, delivery.run_id): [DeliveryItem(delivery_id=delivery.id,
                                                                                       force=True)]})
    return RedeliveryAccepted(delivery_id=delivery.id)

"""The billing connector for Stripe: one customer per onboarding and a trial subscription to the plan.

It speaks through Stripe's own library (a `StripeClient` on httpx, the `*_async` methods, so the
worker's event loop never waits on Stripe), with the library's retries off: Temporal owns retries.

The subscription's item names the plan as `plan`, not `price`: Stripe still accepts a Plan id
(and a recurring Price id) there, and localstripe, the Stripe emulator the tests run against,
knows Plans only. `STEWARD_BILLING_PLANS` maps Steward's plan names to those ids.

Every create sends a Stripe `Idempotency-Key` derived from the caller's key, and before that
looks for what an earlier attempt may have made: Stripe forgets keys after 24 hours and
localstripe ignores them. The customer carries the onboarding id in its metadata
(`steward_onboarding_id`). Stripe cannot filter a list by metadata, and its search API is
eventually consistent (a customer made seconds ago may not be found yet) and absent from
localstripe, so the lookup lists customers and matches the metadata here: a create narrows the
list to the customer's email on the server, and so does an undo, which gets the create's own
request (BillingConnector.cancel_subscription).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import stripe
from temporalio.exceptions import ApplicationError

from activities.connectors.errors import misconfigured, rejected, unavailable
from activities.connectors.models import SubscriptionRecord, SubscriptionRequest, Undone
from activities.llm.providers.openai_compatible import retry_after
from steward.logs import get_logger
from steward.settings import Settings

log = get_logger(__name__)

SYSTEM = "stripe"
ONBOARDING_ID = "steward_onboarding_id"  # the metadata key an onboarding's customer is found by
# Statuses in which a subscription will never bill again; anything else still counts as live.
ENDED_STATUSES = frozenset({"canceled", "incomplete_expired"})
PAGE_SIZE = 100  # the most Stripe returns per page
MAX_IDEMPOTENCY_KEY = 255  # Stripe's limit on an Idempotency-Key

class StripeBilling:
    system = SYSTEM

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def create_subscription(self, request: SubscriptionRequest) -> SubscriptionRecord:
        plan_id = self._settings.billing_plans.get(request.plan)
        if not plan_id:
            raise misconfigured(SYSTEM, f"STEWARD_BILLING_PLANS names no billing plan for {request.plan!r}")
        async with self._client() as client:
            with _translated("create customer"):
                customer = await _customer(client, request.onboarding_id, email=request.email)
                if customer is None:
                    customer = await client.v1.customers.create_async(
                        {
                            "name": request.company_name,
                            "email": request.email,
                            "metadata": {ONBOARDING_ID: request.onboarding_id, "steward_plan": request.plan,
                                         "country": request.country},
                        },
                        {"idempotency_key": _idempotency_key(request.idempotency_key, "customer")},
                    )
            with _translated("create subscription"):
                live = [s for s in await _subscriptions(client, customer.id) if s.status not in ENDED_STATUSES]
                if live:
                    subscription = live[0]
                else:
                    subscription = await client.v1.subscriptions.create_async(
                        {
                            "customer": customer.id,
                            "items": [{"plan": plan_id}],
                            "trial_period_days": self._settings.billing_trial_days,
                            "metadata": {ONBOARDING_ID: request.onboarding_id, "steward_plan": request.plan},
                        },
                        {"idempotency_key": _idempotency_key(request.idempotency_key, "subscription")},
                    )
        log.info("stripe subscription ready", onboarding_id=request.onboarding_id, customer_id=customer.id,
                 subscription_id=subscription.id, status=subscription.status, reused=bool(live))
        return SubscriptionRecord(system=SYSTEM, customer_id=customer.id, subscription_id=subscription.id,
                                  plan=_plan_of(subscription), status=subscription.status)

    async def cancel_subscription(self, request: SubscriptionRequest) -> Undone:
        async with self._client() as client:
            with _translated("cancel subscription"):
                customer = await _customer(client, request.onboarding_id, email=request.email)
                if customer is None:
                    return Undone(system=SYSTEM, found=False, detail="no Stripe customer for this onboarding")
                subscriptions = await _subscriptions(client, customer.id)
                if not subscriptions:
                    return Undone(system=SYSTEM, found=False,
                                  detail=f"Stripe customer {customer.id} has no subscription")
                live = [s for s in subscriptions if s.status not in ENDED_STATUSES]
                if not live:
                    ended = ", ".join(s.id for s in subscriptions)
                    return Undone(system=SYSTEM, found=True, detail=f"subscription {ended} already cancelled")
                for subscription in live:
                    key = _idempotency_key(request.idempotency_key, f"cancel:{subscription.id}")
                    await client.v1.subscriptions.cancel_async(subscription.id, options={"idempotency_key": key})
        cancelled = ", ".join(s.id for s in live)
        log.info("stripe subscription cancelled", onboarding_id=request.onboarding_id, customer_id=customer.id,
                 subscription_ids=cancelled)
        return Undone(system=SYSTEM, found=True, detail=f"subscription {cancelled} cancelled")

    @asynccontextmanager
    async def _client(self) -> AsyncIterator[stripe.StripeClient]:
        """A client for one call: its httpx pool is closed when the call ends, since a connector
        is built per activity and has no close of its own."""
        try:
            key = self._settings.stripe_api_key_value()
        except OSError as error:  # the key file is missing or readable by others; its path stays out
            raise misconfigured(SYSTEM, f"the Stripe key file cannot be read ({type(error).__name__})") from None
        if not key:
            raise misconfigured(SYSTEM, "no Stripe key: set STEWARD_STRIPE_API_KEY or STEWARD_STRIPE_API_KEY_FILE")
        http = stripe.HTTPXClient(timeout=self._settings.connector_timeout_s)
        try:
            yield stripe.StripeClient(
                key,
                base_addresses={"api": self._settings.stripe_api_base.rstrip("/")},
                max_network_retries=0,
                http_client=http,
            )
        finally:
            await http.close_async()


async def _customer(client: stripe.StripeClient, onboarding_id: str, *, email: str | None = None) -> Any | None:
    """The customer whose metadata names this onboarding, or None. With an email the server
    narrows the list to it; without one every customer is read."""
    params: dict[str, Any] = {"limit": PAGE_SIZE}
    if email is not None:
        params["email"] = email
    page = await client.v1.customers.list_async(params)
    async for customer in page.auto_paging_iter():
        if _metadata(customer).get(ONBOARDING_ID) == onboarding_id:
            return customer
    return None


async def _subscriptions(client: stripe.StripeClient, customer_id: str) -> list[Any]:
    """Every subscription of the customer, cancelled ones too (the default list hides them)."""
    page = await client.v1.subscriptions.list_async({"customer": customer_id, "status": "all", "limit": PAGE_SIZE})
    return [subscription async for subscription in page.auto_paging_iter()]


def _metadata(obj: Any) -> dict[str, str]:
    metadata = obj["metadata"] if "metadata" in obj else None
    return metadata.to_dict() if metadata is not None else {}


def _plan_of(subscription: Any) -> str:
    """The plan (or price) id of the subscription's item: Stripe's newer objects name it `price`,
    older ones and localstripe `plan`."""
    item = subscription["items"].data[0]
    for field in ("plan", "price"):
        if field in item and item[field] is not None:
            return item[field].id
    return ""


def _idempotency_key(key: str, step: str) -> str:
    """The caller's key plus the request it guards, hashed when it would exceed Stripe's limit."""
    derived = f"{key}:{step}"
    return derived if len(derived) <= MAX_IDEMPOTENCY_KEY else hashlib.sha256(derived.encode()).hexdigest()


@contextmanager
def _translated(what: str) -> Iterator[None]:
    """Stripe's errors as the connector's ApplicationErrors. The Stripe error is not chained on:
    its message and body may echo what was sent (names, emails)."""
    try:
        yield
    except stripe.StripeError as error:
        raise _failure(error, what) from None


def _failure(error: stripe.StripeError, what: str) -> ApplicationError:
    status = error.http_status
    if isinstance(error, stripe.APIConnectionError):
        return unavailable(SYSTEM, f"{what}: Stripe is unreachable or did not answer in time")
    if isinstance(error, (stripe.AuthenticationError, stripe.PermissionError)) or status in (401, 403):
        return misconfigured(SYSTEM, f"{what} was refused ({status}): check the Stripe key and its permissions")
    if isinstance(error, stripe.RateLimitError) or status == 429:
        return unavailable(SYSTEM, f"{what}: rate limited (429)", next_retry_delay=retry_after(error.headers or {}))
    if status is None or status == 408 or status >= 500:
        return unavailable(SYSTEM, f"{what} failed ({status or 'no answer status'})")
    # Stripe's code and param name what was wrong without repeating the value that was.
    named = (("code", error.code), ("param", getattr(error, "param", None)))
    details = "".join(f", {name} {value}" for name, value in named if value)
    return rejected(SYSTEM, f"{what} was rejected ({status}{details})", status)

"""The Stripe billing connector against a real Stripe emulator (localstripe, tests/stripe_server.py).

What the server holds is read back over its own API, so "exactly one customer" is counted there,
not taken from what the connector says.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError

from activities.connectors.base import billing_connector
from activities.connectors.errors import CONNECTOR_MISCONFIGURED, CONNECTOR_REJECTED, CONNECTOR_UNAVAILABLE
from activities.connectors.models import SubscriptionRequest
from activities.connectors.stripe_billing import StripeBilling
from steward.settings import Settings
from tests.support import free_port, watch

if TYPE_CHECKING:  # imported by pytest_plugins below; importing it here first would skip its assert rewriting
    from tests.conftest import LogLines
    from tests.stripe_server import StripeServer

pytest_plugins = ["tests.stripe_server"]
# Stripe's library hands httpx an encoded form body as `data=`, which httpx deprecates; not ours to fix.

COMPANY = "Quillfeather Instruments GmbH"


@pytest.fixture
def stripe_settings(stripe_server: StripeServer, tmp_path: Path) -> Settings:
    """Settings of the test's own (not conftest's `settings`, which starts Temporal) for this server."""
    return stripe_server.settings(Settings(data_dir=tmp_path))


@pytest.fixture
def billing(stripe_settings: Settings) -> StripeBilling:
    return StripeBilling(stripe_settings)


@pytest.fixture
def signup() -> SubscriptionRequest:
    """A subscription request of the test's own: its onboarding id and email are unique."""
    onboarding_id = f"customer-onboarding-{uuid.uuid4().hex[:12]}"
    email = f"billing-{uuid.uuid4().hex[:8]}@quillfeather.example"
    # As typed, and as it appears in a URL's query (a customer lookup filters by email).
    watch("a test customer's email", email, quote(email, safe=""))
    watch("a test company's name", COMPANY)
    return SubscriptionRequest(onboarding_id=onboarding_id, idempotency_key=f"{onboarding_id}:subscribe",
                               company_name=COMPANY, email=email, plan="team", country="DE")


def call_for(request: SubscriptionRequest) -> SubscriptionRequest:
    """The undo's argument: the create's request, under a key of its own."""
    return request.model_copy(update={"idempotency_key": f"{request.onboarding_id}:cancel"})


def test_the_factory_picks_stripe_when_the_settings_say_so(stripe_settings: Settings) -> None:
    assert isinstance(billing_connector(stripe_settings), StripeBilling)


async def test_a_subscription_is_created_on_the_plan_with_a_trial_and_the_onboarding_in_its_metadata(
    billing: StripeBilling, stripe_settings: Settings, stripe_server: StripeServer, signup: SubscriptionRequest,
) -> None:
    record = await billing.create_subscription(signup)

    [customer] = await stripe_server.customers(signup.onboarding_id)
    assert (customer["id"], customer["name"], customer["email"]) == (record.customer_id, COMPANY, signup.email)
    assert customer["metadata"] == {"steward_onboarding_id": signup.onboarding_id, "steward_plan": "team",
                                    "country": "DE"}
    [subscription] = await stripe_server.subscriptions(signup.onboarding_id)
    assert subscription["id"] == record.subscription_id
    assert subscription["customer"] == record.customer_id
    assert subscription["plan"]["id"] == record.plan == stripe_settings.billing_plans["team"] == "steward-team"
    assert subscription["metadata"]["steward_onboarding_id"] == signup.onboarding_id
    # A trial needs no payment method: nothing is invoiced yet. localstripe leaves a trial
    # subscription in status "incomplete" where Stripe says "trialing"; the record says what the server says.
    assert subscription["trial_period_days"] == stripe_settings.billing_trial_days
    assert subscription["latest_invoice"] is None
    assert record.status == subscription["status"]
    assert record.system == "stripe"


async def test_a_retry_with_the_same_signupgives_the_same_customer_and_subscription_and_no_second_one(
    billing: StripeBilling, stripe_server: StripeServer, signup: SubscriptionRequest,
) -> None:
    first = await billing.create_subscription(signup)
    second = await billing.create_subscription(signup)

    assert second == first
    assert len(await stripe_server.customers(signup.onboarding_id)) == 1
    assert len(await stripe_server.subscriptions(signup.onboarding_id)) == 1


async def test_a_new_idempotency_key_for_the_same_onboarding_still_creates_nothing_new(
    billing: StripeBilling, stripe_server: StripeServer, signup: SubscriptionRequest,
) -> None:
    """localstripe ignores idempotency keys, so only the lookup by metadata can prevent a second customer."""
    first = await billing.create_subscription(signup)
    again = await billing.create_subscription(signup.model_copy(update={"idempotency_key": "another-key"}))

    assert (again.customer_id, again.subscription_id) == (first.customer_id, first.subscription_id)
    assert len(await stripe_server.customers(signup.onboarding_id)) == 1
    assert len(await stripe_server.subscriptions(signup.onboarding_id)) == 1


async def test_a_customer_left_by_an_attempt_that_failed_before_subscribing_gets_the_subscription(
    stripe_settings: Settings, billing: StripeBilling, stripe_server: StripeServer, signup: SubscriptionRequest,
) -> None:
    missing_plan = stripe_settings.model_copy(update={"billing_plans": {"team": "steward-plan-not-on-the-server"}})
    with pytest.raises(ApplicationError):
        await StripeBilling(missing_plan).create_subscription(signup)
    [customer] = await stripe_server.customers(signup.onboarding_id)

    record = await billing.create_subscription(signup)

    assert record.customer_id == customer["id"]
    assert len(await stripe_server.customers(signup.onboarding_id)) == 1
    assert [s["id"] for s in await stripe_server.subscriptions(signup.onboarding_id)] == [record.subscription_id]


async def test_cancel_cancels_the_subscription_and_a_second_cancel_is_still_a_success(
    billing: StripeBilling, stripe_server: StripeServer, signup: SubscriptionRequest,
) -> None:
    record = await billing.create_subscription(signup)

    undone = await billing.cancel_subscription(call_for(signup))
    assert undone.found and undone.system == "stripe"
    assert undone.detail == f"subscription {record.subscription_id} cancelled"
    [subscription] = await stripe_server.subscriptions(signup.onboarding_id)
    assert subscription["status"] == "canceled"

    again = await billing.cancel_subscription(call_for(signup))
    assert again.found
    assert again.detail == f"subscription {record.subscription_id} already cancelled"
    assert [s["status"] for s in await stripe_server.subscriptions(signup.onboarding_id)] == ["canceled"]


async def test_a_create_after_a_cancel_subscribes_the_same_customer_again(
    billing: StripeBilling, stripe_server: StripeServer, signup: SubscriptionRequest,
) -> None:
    """A cancelled subscription is not reused: it will never bill again."""
    cancelled = await billing.create_subscription(signup)
    await billing.cancel_subscription(call_for(signup))

    again = await billing.create_subscription(signup.model_copy(update={"idempotency_key": "a-later-attempt"}))

    assert again.customer_id == cancelled.customer_id
    assert again.subscription_id != cancelled.subscription_id
    statuses = {s["id"]: s["status"] for s in await stripe_server.subscriptions(signup.onboarding_id)}
    assert statuses[cancelled.subscription_id] == "canceled"
    assert statuses[again.subscription_id] != "canceled"


async def test_cancel_for_an_onboarding_that_never_subscribed_finds_nothing(
    billing: StripeBilling, stripe_server: StripeServer, signup: SubscriptionRequest,
) -> None:
    undone = await billing.cancel_subscription(call_for(signup))

    assert not undone.found
    assert await stripe_server.customers(signup.onboarding_id) == []


async def test_a_plan_mapped_to_a_plan_the_server_does_not_have_is_rejected_without_retry(
    stripe_settings: Settings, signup: SubscriptionRequest, stripe_server: StripeServer,
) -> None:
    missing_plan = stripe_settings.model_copy(update={"billing_plans": {"team": "steward-plan-not-on-the-server"}})

    with pytest.raises(ApplicationError) as failure:
        await StripeBilling(missing_plan).create_subscription(signup)

    assert failure.value.type == CONNECTOR_REJECTED and failure.value.non_retryable
    assert "404" in failure.value.message
    assert signup.email not in failure.value.message and COMPANY not in failure.value.message
    assert await stripe_server.subscriptions(signup.onboarding_id) == []


async def test_a_plan_name_with_no_billing_plan_is_misconfigured_before_anything_is_created(
    stripe_settings: Settings, signup: SubscriptionRequest, stripe_server: StripeServer,
) -> None:
    unmapped = stripe_settings.model_copy(update={"billing_plans": {"starter": "steward-starter"}})

    with pytest.raises(ApplicationError) as failure:
        await StripeBilling(unmapped).create_subscription(signup)

    assert failure.value.type == CONNECTOR_MISCONFIGURED and failure.value.non_retryable
    assert await stripe_server.customers(signup.onboarding_id) == []


async def test_a_key_stripe_never_issues_is_refused_as_misconfigured(
    stripe_settings: Settings, signup: SubscriptionRequest,
) -> None:
    """localstripe accepts any key shaped like a secret key (sk_...), so a well-formed wrong key
    cannot be told apart there; a key of another shape is refused with 401."""
    wrong_key = "rk_test_a-restricted-key-localstripe-refuses"
    watch("a wrong Stripe key", wrong_key)
    wrong = stripe_settings.model_copy(update={"stripe_api_key": SecretStr(wrong_key)})

    with pytest.raises(ApplicationError) as failure:
        await StripeBilling(wrong).create_subscription(signup)

    assert failure.value.type == CONNECTOR_MISCONFIGURED and failure.value.non_retryable
    assert "401" in failure.value.message and wrong_key not in failure.value.message


@pytest.mark.parametrize("step", ["create", "cancel"])
async def test_no_key_is_misconfigured(stripe_settings: Settings, signup: SubscriptionRequest, step: str) -> None:
    keyless = StripeBilling(stripe_settings.model_copy(update={"stripe_api_key": None, "stripe_api_key_file": None}))

    with pytest.raises(ApplicationError) as failure:
        if step == "create":
            await keyless.create_subscription(signup)
        else:
            await keyless.cancel_subscription(call_for(signup))

    assert failure.value.type == CONNECTOR_MISCONFIGURED and failure.value.non_retryable


@pytest.mark.parametrize("step", ["create", "cancel"])
async def test_a_server_that_is_down_is_unavailable_and_retried(
    stripe_settings: Settings, signup: SubscriptionRequest, step: str,
) -> None:
    down = stripe_settings.model_copy(update={"stripe_api_base": f"http://127.0.0.1:{free_port()}"})
    nothing_listens = StripeBilling(down)

    with pytest.raises(ApplicationError) as failure:
        if step == "create":
            await nothing_listens.create_subscription(signup)
        else:
            await nothing_listens.cancel_subscription(call_for(signup))

    assert failure.value.type == CONNECTOR_UNAVAILABLE and not failure.value.non_retryable


async def test_no_log_line_names_the_customer_or_its_email(
    billing: StripeBilling, signup: SubscriptionRequest, log_lines: LogLines,
) -> None:
    """Stripe's library logs each request's URL (a lookup's holds the email) unless the connector quiets it."""
    await billing.create_subscription(signup)
    await billing.cancel_subscription(call_for(signup))

    text = "\n".join(log_lines.lines)
    assert "stripe subscription ready" in text and "stripe subscription cancelled" in text
    for personal in (signup.email, quote(signup.email, safe=""), COMPANY):
        assert personal not in text

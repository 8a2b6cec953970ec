"""What goes into and comes out of a connector: one pydantic model per call, shared by every
implementation of an interface, so a workflow never knows which system is behind it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Plan = Literal["starter", "team", "business", "enterprise"]  # steward.settings.PLANS


class ConnectorCall(BaseModel):
    """What every call carries: the onboarding it belongs to and the key that makes it safe to repeat."""

    onboarding_id: str = Field(
        min_length=1, max_length=200,
        description="The workflow id: every system stores it (externalId, metadata), so a record can be "
                    "found again without knowing the id the system gave it.",
    )
    idempotency_key: str = Field(min_length=1, max_length=255, description="Workflow id + step.")


class AccountRequest(ConnectorCall):
    company_name: str = Field(min_length=1, max_length=200)
    plan: Plan
    country: str = Field(pattern=r"^[A-Z]{2}$")
    contact_email: str = Field(max_length=320)


class AccountRecord(BaseModel):
    system: str = Field(description="Which implementation answered: embedded, http, ...")
    account_id: str
    status: Literal["pending", "active", "archived"]


class UserRequest(ConnectorCall):
    full_name: str = Field(min_length=1, max_length=200)
    email: str = Field(max_length=320, description="Also the userName: what the person signs in with.")


class UserRecord(BaseModel):
    system: str
    user_id: str
    active: bool


class SubscriptionRequest(ConnectorCall):
    company_name: str = Field(min_length=1, max_length=200)
    email: str = Field(max_length=320, description="Where the billing system sends invoices.")
    plan: Plan
    country: str = Field(pattern=r"^[A-Z]{2}$")


class SubscriptionRecord(BaseModel):
    system: str
    customer_id: str
    subscription_id: str
    plan: str = Field(description="The billing system's plan (or price) id the subscription is to.")
    status: str = Field(description="As the billing system says: trialing, active, ...")


class Undone(BaseModel):
    """The answer to a compensation. `found=False` is success too: there was nothing to undo."""

    system: str
    found: bool
    detail: str = Field(description="What was done, in words for the run's record: 'subscription sub_1 cancelled'.")

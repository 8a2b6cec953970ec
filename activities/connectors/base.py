"""The three connector interfaces, and the implementation of each that the settings choose.

An implementation is a class with these async methods, built from Settings. Creating is
idempotent (the same `idempotency_key`/`onboarding_id` gives the same record, never a second
one); undoing is idempotent and safe on nothing (`Undone(found=False)`).
"""

from __future__ import annotations

from typing import Protocol

from activities.connectors.models import (
    AccountRecord,
    AccountRequest,
    ConnectorCall,
    SubscriptionRecord,
    SubscriptionRequest,
    Undone,
    UserRecord,
    UserRequest,
)
from steward.settings import Settings


class CrmConnector(Protocol):
    system: str

    async def create_account(self, request: AccountRequest) -> AccountRecord: ...

    async def activate_account(self, call: ConnectorCall) -> AccountRecord: ...

    async def archive_account(self, call: ConnectorCall) -> Undone: ...


class IdentityConnector(Protocol):
    system: str

    async def create_user(self, request: UserRequest) -> UserRecord: ...

    async def deactivate_user(self, call: ConnectorCall) -> Undone: ...


class BillingConnector(Protocol):
    system: str

    async def create_subscription(self, request: SubscriptionRequest) -> SubscriptionRecord: ...

    async def cancel_subscription(self, request: SubscriptionRequest) -> Undone:
        """The create's own request (a fresh idempotency key): its email lets a billing system
        find the customer with one filtered list instead of reading them all."""


# Imports inside the functions: a worker loads only the client libraries it uses.
def crm_connector(settings: Settings) -> CrmConnector:
    if settings.crm_connector_in_use == "http":
        from activities.connectors.http_crm import HttpCrm
        return HttpCrm(settings)
    from activities.connectors.embedded import EmbeddedCrm
    return EmbeddedCrm(settings)


def identity_connector(settings: Settings) -> IdentityConnector:
    if settings.identity_connector_in_use == "scim":
        from activities.connectors.scim import ScimIdentity
        return ScimIdentity(settings)
    from activities.connectors.embedded import EmbeddedIdentity
    return EmbeddedIdentity(settings)


def billing_connector(settings: Settings) -> BillingConnector:
    if settings.billing_connector_in_use == "stripe":
        from activities.connectors.stripe_billing import StripeBilling
        return StripeBilling(settings)
    from activities.connectors.embedded import EmbeddedBilling
    return EmbeddedBilling(settings)

"""Provisioning activities: each one call to the connector the settings choose (CRM, identity,
billing), and the compensations that undo them.

The connector does the work and keeps the rules (activities/connectors/): idempotent creates,
undo that is safe on nothing, typed failures. These activities add what a Temporal activity
needs: the settings of this process, log lines with ids (never the contact's name or address),
and, for compensations, no non-retryable failure at all — the saga retries an undo until it
succeeds (workflows/saga.py), so a refusal a person must fix (a revoked key) keeps the run
waiting, visibly, instead of leaving a subscription behind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TypeVar

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.connectors.base import billing_connector, crm_connector, identity_connector
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
from steward import runtime
from steward.logs import get_logger

log = get_logger(__name__)
T = TypeVar("T")


@asynccontextmanager
async def _logged(call: ConnectorCall, system: str) -> AsyncIterator[None]:
    info = activity.info()
    with structlog.contextvars.bound_contextvars(
        workflow_id=info.workflow_id, run_id=info.workflow_run_id, activity_type=info.activity_type,
        attempt=info.attempt, system=system,
    ):
        try:
            yield
        except ApplicationError as error:
            log.warning("connector call failed", error_type=error.type, non_retryable=error.non_retryable)
            raise
        log.info("connector call done")


async def _undo(call: ConnectorCall, system: str, undo: Awaitable[Undone]) -> Undone:
    try:
        async with _logged(call, system):
            return await undo
    except ApplicationError as error:
        if not error.non_retryable:
            raise
        # Retried anyway: see the module docstring.
        raise ApplicationError(f"{error.message} (a compensation: retried until it succeeds)", *error.details,
                               type=error.type, non_retryable=False) from None


@activity.defn(name="create-crm-account")
async def create_crm_account(request: AccountRequest) -> AccountRecord:
    crm = crm_connector(runtime.settings())
    async with _logged(request, crm.system):
        return await crm.create_account(request)


@activity.defn(name="activate-crm-account")
async def activate_crm_account(call: ConnectorCall) -> AccountRecord:
    crm = crm_connector(runtime.settings())
    async with _logged(call, crm.system):
        return await crm.activate_account(call)


@activity.defn(name="archive-crm-account")
async def archive_crm_account(call: ConnectorCall) -> Undone:
    crm = crm_connector(runtime.settings())
    return await _undo(call, crm.system, crm.archive_account(call))


@activity.defn(name="create-identity-user")
async def create_identity_user(request: UserRequest) -> UserRecord:
    identity = identity_connector(runtime.settings())
    async with _logged(request, identity.system):
        return await identity.create_user(request)


@activity.defn(name="deactivate-identity-user")
async def deactivate_identity_user(call: ConnectorCall) -> Undone:
    identity = identity_connector(runtime.settings())
    return await _undo(call, identity.system, identity.deactivate_user(call))


@activity.defn(name="create-billing-subscription")
async def create_billing_subscription(request: SubscriptionRequest) -> SubscriptionRecord:
    billing = billing_connector(runtime.settings())
    async with _logged(request, billing.system):
        return await billing.create_subscription(request)


@activity.defn(name="cancel-billing-subscription")
async def cancel_billing_subscription(request: SubscriptionRequest) -> Undone:
    billing = billing_connector(runtime.settings())
    return await _undo(request, billing.system, billing.cancel_subscription(request))


PROVISIONING_ACTIVITIES = (create_crm_account, activate_crm_account, archive_crm_account, create_identity_user,
                           deactivate_identity_user, create_billing_subscription, cancel_billing_subscription)

"""Carrying the API's verified principal into workflows, in Temporal headers.

Client side (the API): inside `acting_as(principal)`, every workflow start and update the client
sends carries a signed identity assertion in the `steward-principal` header.

Worker side: an inbound interceptor checks the assertion when an update is validated (before
anything reaches history) and makes the principal available to the workflow's validator and
handler through `verified_caller()`. A decision sent around the API (the temporal CLI, another
client) has no valid assertion, and `verified_caller()` returns None for it.

Validators do not run during replay; handlers do. So the signature is checked only in the
validator, and the handler reads the principal from an update that was already accepted: replay
stays deterministic even after the platform secret is rotated.
"""

from __future__ import annotations

import contextlib
import contextvars
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from temporalio import client, workflow
from temporalio.api.common.v1 import Payload
from temporalio.converter import default as default_converter
from temporalio.worker import (
    HandleUpdateInput,
    Interceptor,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
)

from steward.identity import Principal, principal_of, sign_assertion, verify_assertion

HEADER = "steward-principal"

_acting: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("steward_acting", default=None)
_verified: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("steward_verified", default=None)
# Headers hold plain JSON payloads: readable by any Temporal tool, and no secret is in them.
_payloads = default_converter().payload_converter


@contextlib.contextmanager
def acting_as(principal: Principal) -> Iterator[None]:
    token = _acting.set(principal)
    try:
        yield
    finally:
        _acting.reset(token)


def verified_caller() -> Principal | None:
    """In an update validator or handler: the caller the API verified, or None."""
    return _verified.get()


# --- one interceptor for both sides -----------------------------------------------------------


class IdentityInterceptor(client.Interceptor, Interceptor):
    """Signs on the client, verifies on the worker. Given to Client.connect, it also applies to
    every worker built from that client, as Temporal's own TracingInterceptor does."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def intercept_client(self, next: client.OutboundInterceptor) -> client.OutboundInterceptor:
        return _PrincipalOutbound(next, self._key)

    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        return _verifying_inbound(self._key)


# --- client side ------------------------------------------------------------------------------


class _PrincipalOutbound(client.OutboundInterceptor):
    def __init__(self, next: client.OutboundInterceptor, key: bytes) -> None:
        super().__init__(next)
        self._key = key

    def _header(self, workflow_id: str, update_id: str | None) -> Payload | None:
        principal = _acting.get()
        if principal is None:
            return None
        assertion = sign_assertion(self._key, principal, workflow_id=workflow_id, update_id=update_id)
        return _payloads.to_payload(assertion)

    async def start_workflow(self, input: client.StartWorkflowInput) -> Any:
        if (header := self._header(input.id, None)) is not None:
            input.headers = {**input.headers, HEADER: header}
        return await super().start_workflow(input)

    async def start_workflow_update(self, input: client.StartWorkflowUpdateInput) -> Any:
        # The assertion is bound to the update id, so the id must exist before signing.
        input.update_id = input.update_id or str(uuid.uuid4())
        if (header := self._header(input.id, input.update_id)) is not None:
            input.headers = {**input.headers, HEADER: header}
        return await super().start_workflow_update(input)


# --- worker side ------------------------------------------------------------------------------


def _verifying_inbound(key: bytes) -> type[WorkflowInboundInterceptor]:
    class _Inbound(WorkflowInboundInterceptor):
        def handle_update_validator(self, input: HandleUpdateInput) -> None:
            assertion = _decode(input.headers.get(HEADER))
            principal = verify_assertion(key, assertion, workflow_id=workflow.info().workflow_id, update_id=input.id)
            token = _verified.set(principal)
            try:
                super().handle_update_validator(input)
            finally:
                _verified.reset(token)

        async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
            # Accepted updates were verified by the validator above; replay must not re-judge them.
            token = _verified.set(principal_of(_decode(input.headers.get(HEADER))))
            try:
                return await super().handle_update_handler(input)
            finally:
                _verified.reset(token)

    return _Inbound


def principal_from_headers(headers: Mapping[str, Payload]) -> Principal | None:
    """Who sent an accepted update, from its identity header (already verified by the validator)."""
    return principal_of(_decode(headers.get(HEADER)))


def _decode(payload: Payload | None) -> Any:
    if payload is None:
        return None
    try:
        return _payloads.from_payload(payload)
    except Exception:  # a malformed header is simply not a valid assertion
        return None

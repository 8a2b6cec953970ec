"""Carrying a person's decision to a run as a Temporal update, with their verified identity.

The API only carries it: the caller's principal travels in a signed Temporal header
(steward/identity_headers.py), and the workflow's update validator decides whether this person
may do this now. Its refusals are typed ApplicationErrors, which come back here as 403 (who you
are) or 409 (the state of the run), in the one error shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TypeVar

from pydantic import BaseModel
from temporalio.client import (
    Client, WorkflowExecutionDescription, WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import ApiError
from steward.codec import encrypting_for
from steward.identity import Principal
from steward.identity_headers import acting_as

ResultT = TypeVar("ResultT", bound=BaseModel)
# A run's worker takes an update in well under a second. One that does not within this long is
# down or starved: answer, under the 10 s after which clients and proxies commonly give up, rather
# than hold the caller indefinitely. The update stays with the run and is taken when it can be.
UPDATE_RPC_TIMEOUT = timedelta(seconds=8)


async def execute_verified_update(
    client: Client, description: WorkflowExecutionDescription, principal: Principal, update: str,
    request: BaseModel, result_type: type[ResultT], *, forbidden: tuple[str, ...], conflicts: Mapping[str, str],
    closed: ApiError,
) -> ResultT:
    """Run `update` on the described run as `principal`.

    `forbidden` are the validator's refusal types meaning 403; `conflicts` maps its other refusal
    types to 409 error codes; `closed` is the answer for a run that ended meanwhile, or whose
    workflow has no such update.
    """
    handle = client.get_workflow_handle(description.id, run_id=description.run_id)
    try:
        # The update's payloads are the run's tenant's, also when it comes from a link, not a token.
        with acting_as(principal), encrypting_for(principal.tenant):
            return await handle.execute_update(update, request, result_type=result_type,
                                               rpc_timeout=UPDATE_RPC_TIMEOUT)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        kind = cause.type if isinstance(cause, ApplicationError) else None
        message = cause.message if isinstance(cause, ApplicationError) else "the request was refused"
        if kind in forbidden:
            raise ApiError(403, "forbidden", message, {"reason": kind}) from None
        if kind in conflicts:
            raise ApiError(409, conflicts[kind], message) from None
        raise closed from None
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        raise ApiError(503, "run_unresponsive", f"the run did not take the request within "
                       f"{UPDATE_RPC_TIMEOUT.total_seconds():g} s (its worker may be down or busy); it may still "
                       "take it when the worker gets to it: GET the run before trying again",
                       headers={"Retry-After": "15"}) from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # the run closed between describe and update
            raise closed from None
        raise

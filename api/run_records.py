"""Translating between Temporal executions and the API's run records.

A run's status, stage, requester and tenant come from Temporal itself (execution status and
Steward's search attributes), never from a copy the API keeps: Temporal is the one source of
truth, and visibility lets lists be filtered server-side.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.exceptions import ApplicationError, CancelledError, TerminatedError
# Not the builtin TimeoutError, which asyncio raises: keep the names apart.
from temporalio.exceptions import TimeoutError as RunTimedOut
from temporalio.service import RPCError, RPCStatusCode

from activities.artifacts.store import ArtifactRef
from activities.incidents.models import IncidentView
from activities.llm.models import LlmUsage
from api.errors import ApiError
from api.models import RunDetail, RunError, RunLinks, RunStatus, RunSummary
from steward import search_attributes as sa
from workflows.approvals import MEMO_KEY as APPROVALS_MEMO_KEY
from workflows.artifacts import MEMO_KEY as ARTIFACTS_MEMO_KEY
from workflows.customer_onboarding import MEMO_KEY as ONBOARDING_MEMO_KEY
from workflows.customer_onboarding import OnboardingView
from workflows.incident_response import MEMO_KEY as INCIDENT_MEMO_KEY
from workflows.approvals import ApprovalState
from workflows.llm_steps import MEMO_KEY as LLM_MEMO_KEY
from workflows.spec import WorkflowSpec

_CLOSED_STATUS = {
    WorkflowExecutionStatus.COMPLETED: RunStatus.completed,
    WorkflowExecutionStatus.FAILED: RunStatus.failed,
    WorkflowExecutionStatus.CANCELED: RunStatus.cancelled,
    WorkflowExecutionStatus.TERMINATED: RunStatus.terminated,
    WorkflowExecutionStatus.TIMED_OUT: RunStatus.timed_out,
}
# Visibility's names for the same statuses, for list filters.
_VISIBILITY_STATUS = {
    RunStatus.completed: "Completed",
    RunStatus.failed: "Failed",
    RunStatus.cancelled: "Canceled",
    RunStatus.terminated: "Terminated",
    RunStatus.timed_out: "TimedOut",
}
APPROVAL_PENDING = "pending"
NOTIFICATIONS_MEMO_KEY = "notifications"


def run_link(run_id: str) -> RunLinks:
    return RunLinks(self=f"/v1/runs/{run_id}")


def status_of(execution: WorkflowExecution) -> RunStatus:
    status = execution.status
    if status in _CLOSED_STATUS:
        return _CLOSED_STATUS[status]
    if execution.typed_search_attributes.get(sa.APPROVAL_STATE) == APPROVAL_PENDING:
        return RunStatus.waiting_for_approval
    return RunStatus.running


def is_closed(execution: WorkflowExecution) -> bool:
    return execution.status in _CLOSED_STATUS


def summary_of(execution: WorkflowExecution) -> RunSummary:
    attrs = execution.typed_search_attributes
    return RunSummary(
        id=execution.id,
        workflow=execution.workflow_type,
        status=status_of(execution),
        stage=attrs.get(sa.STAGE),
        requested_by=attrs.get(sa.REQUESTED_BY),
        tenant=attrs.get(sa.TENANT) or "",
        started_at=execution.start_time,
        closed_at=execution.close_time,
        links=run_link(execution.id),
    )


async def describe_for_tenant(client: Client, run_id: str, tenant: str) -> WorkflowExecutionDescription:
    """Describe the run, or 404 — for unknown ids and other tenants' runs alike, so an id
    reveals nothing about runs the caller may not see."""
    not_found = ApiError(404, "not_found", f"run {run_id!r} not found")
    try:
        description = await client.get_workflow_handle(run_id).describe()
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise not_found from None
        raise
    if description.typed_search_attributes.get(sa.TENANT) != tenant:
        raise not_found
    return description


def _error_of(failure: BaseException) -> RunError:
    if isinstance(failure, ApplicationError):
        return RunError(type=failure.type or "ApplicationError", message=failure.message)
    if isinstance(failure, TerminatedError):
        return RunError(type="Terminated", message=failure.message or "run was terminated")
    if isinstance(failure, RunTimedOut):
        return RunError(type="TimedOut", message="run exceeded its execution timeout")
    if isinstance(failure, CancelledError):
        return RunError(type="Cancelled", message="run was cancelled")
    return RunError(type=type(failure).__name__, message=str(failure))


async def _outcome(handle: WorkflowHandle[Any, Any]) -> tuple[dict[str, Any] | None, RunError | None]:
    """A closed run's result or error (one long-poll on its history)."""
    try:
        result = await handle.result(follow_runs=False)
    except WorkflowFailureError as exc:
        return None, _error_of(exc.cause)
    return (result.model_dump(mode="json") if hasattr(result, "model_dump") else {"value": result}), None


async def detail_of(
    client: Client, description: WorkflowExecutionDescription, spec: WorkflowSpec | None,
    *, wait: timedelta | None = None,
) -> RunDetail:
    """The run's details. With `wait`, first wait up to that long for a running run to end: one
    request where a client would otherwise poll."""
    handle = client.get_workflow_handle(
        description.id, run_id=description.run_id, result_type=spec.output_model if spec else None
    )
    outcome = None
    if wait and not is_closed(description):
        try:
            outcome = await asyncio.wait_for(_outcome(handle), wait.total_seconds())
        except TimeoutError:
            pass
        else:
            description = await handle.describe()  # the closed run's status, stage and times
    detail = RunDetail(**summary_of(description).model_dump())
    memo = await description.memo()
    detail.callback_url = redacted_url(memo["callback_url"]) if memo.get("callback_url") else None
    detail.definition_sha256 = memo.get("definition_sha256")
    detail.schedule = (memo.get("schedule") or {}).get("name")
    if memo.get(LLM_MEMO_KEY) is not None:
        detail.llm = LlmUsage.model_validate(memo[LLM_MEMO_KEY])
    detail.approvals = [ApprovalState.model_validate(raw) for raw in memo.get(APPROVALS_MEMO_KEY) or ()]
    detail.artifacts = [ArtifactRef.model_validate(raw) for raw in memo.get(ARTIFACTS_MEMO_KEY) or ()]
    detail.notifications = list(memo.get(NOTIFICATIONS_MEMO_KEY) or ())
    if memo.get(INCIDENT_MEMO_KEY) is not None:
        detail.incident = IncidentView.model_validate(memo[INCIDENT_MEMO_KEY])
    if memo.get(ONBOARDING_MEMO_KEY) is not None:
        detail.onboarding = OnboardingView.model_validate(memo[ONBOARDING_MEMO_KEY])
    if is_closed(description):
        detail.result, detail.error = outcome or await _outcome(handle)
    return detail


def visibility_query(tenant: str, workflow: str | None, status: RunStatus | None) -> str:
    """A visibility query for the tenant's runs. Values are identifiers validated upstream
    (tenant by the token's pattern, workflow by the catalog), so quoting cannot be escaped."""
    # A continued-as-new execution lives on under the same id; list only its latest run.
    clauses = [f"{sa.TENANT.name} = '{tenant}'", "ExecutionStatus != 'ContinuedAsNew'"]
    if workflow is not None:
        clauses.append(f"WorkflowType = '{workflow}'")
    if status is RunStatus.waiting_for_approval:
        clauses.append(f"ExecutionStatus = 'Running' AND {sa.APPROVAL_STATE.name} = '{APPROVAL_PENDING}'")
    elif status is RunStatus.running:
        clauses.append(
            f"ExecutionStatus = 'Running' AND ({sa.APPROVAL_STATE.name} IS NULL"
            f" OR {sa.APPROVAL_STATE.name} != '{APPROVAL_PENDING}')"
        )
    elif status is not None:
        clauses.append(f"ExecutionStatus = '{_VISIBILITY_STATUS[status]}'")
    return " AND ".join(clauses)


REDACTED = "REDACTED"


def redacted_url(url: str) -> str:
    """`url` as a response may show it: its userinfo, query and fragment can carry credentials
    (`?token=`, `user:password@`), so each is replaced by REDACTED; scheme, host, port and path stay."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    netloc = (f"{REDACTED}@" if "@" in parts.netloc else "") + host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, REDACTED if parts.query else "",
                       REDACTED if parts.fragment else ""))

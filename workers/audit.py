"""The worker's audit interceptor: every workflow's start, end, accepted updates and what its
activities report (LLM calls, artifacts) go to the tenant's audit log, with no code in the
workflow (workflows/audit.py writes; activities/audit/ keeps the log). The same place counts
closed runs by status for the worker's metrics (workflows/metrics.py)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import FailureError, is_cancelled_exception
from temporalio.worker import (
    ExecuteWorkflowInput,
    HandleUpdateInput,
    Interceptor,
    StartActivityInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from activities.artifacts.store import ArtifactRef
from activities.audit.activity import AuditEvent
from activities.llm.models import LlmTaskResult
from steward.identity_headers import principal_from_headers
from workflows import metrics
from workflows.audit import audited, defer, digest, event_id, evented, flush, record, record_soon

AUDIT_ACTIVITY = "append-audit-entries"
# How long before its execution timeout a run records that it timed out: enough for the write.
TIMEOUT_NOTICE = timedelta(seconds=30)


class AuditInterceptor(Interceptor):
    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        return _AuditInbound


class _AuditInbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_AuditOutbound(outbound))

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        try:
            result = await self._audited(input)
        except workflow.ContinueAsNewError:
            _count_closed("continued_as_new")
            raise
        except (FailureError, asyncio.CancelledError) as error:
            _count_closed("cancelled" if is_cancelled_exception(error) else "failed")
            raise
        _count_closed("completed")
        return result

    async def _audited(self, input: ExecuteWorkflowInput) -> Any:
        if not audited():  # a run from before the audit log: replays as it ran
            return await super().execute_workflow(input)
        evented()  # decided once, at the start: from here on, the run records as events need
        # Written with the run's first other entry (or its end): a local activity fewer per run.
        defer(AuditEvent(event_id=event_id("started"), kind="run.started", data={
            "requested_by": workflow.memo_value("requested_by", None),
            "request_sha256": workflow.memo_value("request_sha256", None),
            "idempotency_key_sha256": workflow.memo_value("idempotency_key_sha256", None),
            "parent_run": workflow.info().parent.workflow_id if workflow.info().parent else None,
            "input_sha256": digest(list(input.args)),
            # A declarative run's definition, by the SHA-256 of what it runs (only theirs: code
            # workflows' entries stay as they were).
            **({"definition_sha256": sha} if (sha := workflow.memo_value("definition_sha256", None)) else {}),
        }))
        try:
            result = await self._before_deadline(input)
        except workflow.ContinueAsNewError:
            await self._ended({"status": "continued_as_new"})
            raise
        except (FailureError, asyncio.CancelledError) as error:  # what ends a run (anything else retries a task)
            cancelled = is_cancelled_exception(error)
            error_type = None if cancelled else getattr(error, "type", None) or type(error).__name__
            await self._ended({"status": "cancelled" if cancelled else "failed", "error_type": error_type})
            raise
        await self._ended({"status": "completed", "result_sha256": digest(result)})
        return result

    async def _before_deadline(self, input: ExecuteWorkflowInput) -> Any:
        """The workflow's own result; for a run with an execution timeout, raced against it. Temporal
        ends a run past its timeout without running any of its code, so the run records its end a
        little before (run.timed_out) and then waits for Temporal to time it out: it never records a
        second end, and the run's status stays Temporal's own, timed out."""
        info = workflow.info()
        if info.execution_timeout is None or not evented():
            return await super().execute_workflow(input)
        remaining = info.workflow_start_time + info.execution_timeout - TIMEOUT_NOTICE - workflow.now()
        if remaining <= timedelta(0):
            return await super().execute_workflow(input)
        body = asyncio.ensure_future(super().execute_workflow(input))
        try:
            await workflow.wait_condition(body.done, timeout=remaining)
        except asyncio.CancelledError:
            body.cancel()  # the run's cancellation is the body's to handle (compensations, ...)
            return await body
        except TimeoutError:
            await self._ended({"status": "timed_out"})
            await workflow.wait_condition(lambda: False)  # Temporal times the run out within the notice
        return await body

    async def _ended(self, data: dict[str, Any]) -> None:
        ended = AuditEvent(event_id=event_id("ended"), kind="run.ended", data=data)
        if evented():
            # Everything not yet written waits in the run's deferred entries: the end goes last, in
            # the same write (the last stage change and the end cost one local activity, not two).
            defer(ended)
            await record(sign_head=True)
            await flush()
            return
        await flush()  # what activities reported and handlers recorded comes before the end
        await record(ended, sign_head=True)

    async def handle_update_handler(self, input: HandleUpdateInput) -> Any:
        result = await super().handle_update_handler(input)
        principal = principal_from_headers(input.headers)
        await record(AuditEvent(event_id=event_id("update", input.id), kind="update.accepted", data={
            "update": input.update, "update_id": input.id,
            "by": principal.sub if principal else None, "roles": list(principal.roles) if principal else [],
            "args_sha256": digest(list(input.args)), "result_sha256": digest(result),
        }))
        return result


class _AuditOutbound(WorkflowOutboundInterceptor):
    def __init__(self, next: WorkflowOutboundInterceptor) -> None:
        super().__init__(next)
        self._started = 0  # activities started by this run, in order: part of each event id

    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle:
        return self._watch(super().start_activity(input))

    def start_local_activity(self, input: StartLocalActivityInput) -> workflow.ActivityHandle:
        handle = super().start_local_activity(input)
        return handle if input.activity == AUDIT_ACTIVITY else self._watch(handle)

    def _watch(self, handle: workflow.ActivityHandle) -> workflow.ActivityHandle:
        self._started += 1
        number = self._started

        def completed(done: asyncio.Future[Any]) -> None:
            if done.cancelled() or done.exception() is not None:
                return  # the workflow sees the failure and decides what it means
            events = [AuditEvent(event_id=event_id("activity", str(number), str(i)), kind=kind, data=data)
                      for i, (kind, data) in enumerate(reported_by(done.result()))]
            record_soon(*events)

        handle.add_done_callback(completed)
        return handle


def _count_closed(status: str) -> None:
    metrics.count("steward_workflow_runs_closed", "Runs ended, by workflow and status.",
                  workflow=workflow.info().workflow_type, status=status)


def reported_by(result: Any) -> list[tuple[str, dict[str, Any]]]:
    """What an activity's result says that belongs in the audit log: LLM calls and artifacts."""
    if isinstance(result, LlmTaskResult):
        call = result.record
        return [("llm.call", {
            "step": call.step, "task": call.task, "provider": call.provider, "model_requested": call.model_requested,
            "model_version": call.model_version, "prompt_template": call.prompt_template,
            "prompt_sha256": call.prompt_sha256, "input_tokens": call.input_tokens,
            "output_tokens": call.output_tokens, "cost_usd": call.cost_usd, "calls": call.calls,
            "decision": call.decision, "confidence": call.confidence, "valid": call.validation.valid,
            "repaired": call.validation.repaired,
            # Which rule matched where, never the matched text: it is the applicant's.
            "injection_flags": [{"source": f.source, "rule": f.rule} for f in call.injection_flags],
            "needs_review": result.needs_review,
        })]
    if isinstance(result, ArtifactRef):
        return [("artifact.written", result.model_dump(mode="json"))]
    if isinstance(result, list | tuple):
        return [entry for item in result for entry in reported_by(item)]
    return []

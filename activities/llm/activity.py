"""The `llm-run-task` activity: every AI step of every workflow goes through it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from temporalio import activity

from activities.llm.models import LlmTaskRequest, LlmTaskResult
from activities.llm.service import get_service
from steward.metric_names import LLM_STEP_COST_USD

# Well under the heartbeat timeout workflows give this activity (workflows/llm_steps.py).
HEARTBEAT_EVERY_S = 5.0


@contextlib.asynccontextmanager
async def _heartbeating() -> AsyncIterator[None]:
    """Heartbeat while the step waits on a budget or a slow model, so a dead worker is noticed."""

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(HEARTBEAT_EVERY_S)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@activity.defn(name="llm-run-task")
async def run_llm_task(request: LlmTaskRequest) -> LlmTaskResult:
    info = activity.info()
    # Activities run in their own task, so these ids stay on this step's log lines only.
    structlog.contextvars.bind_contextvars(
        workflow_id=info.workflow_id, run_id=info.workflow_run_id, activity_type=info.activity_type,
        attempt=info.attempt,
    )
    async with _heartbeating():
        result = await get_service().run(request, attempt=info.attempt)
    _measure(result)
    return result


def _measure(result: LlmTaskResult) -> None:
    """LLM use for the worker's metrics, by provider and model (both bounded by configuration)."""
    call, meter = result.record, activity.metric_meter()
    labels = {"provider": call.provider, "model": call.model_version, "task": call.task}
    outcome = "screened" if call.calls == 0 else "valid" if call.validation.valid else "invalid"
    meter.create_counter("steward_llm_calls", "LLM steps, by outcome: valid, invalid, screened (no call made)."
                         ).add(1, {**labels, "outcome": outcome})
    tokens = meter.create_counter("steward_llm_tokens", "Tokens used, by direction.")
    tokens.add(call.input_tokens, {**labels, "direction": "input"})
    tokens.add(call.output_tokens, {**labels, "direction": "output"})
    meter.create_histogram_float(LLM_STEP_COST_USD, "What one LLM step cost; its _sum is the spend."
                                 ).record(call.cost_usd, labels)

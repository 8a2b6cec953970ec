"""Running LLM steps from a workflow, and keeping the run's ledger of them.

Every step goes through the `llm-run-task` activity. Its record is kept in the run's memo (so
GET /v1/runs/{id} shows it while the run is still going) and the run's token and cost totals in
the LlmTokens and LlmCostUsd search attributes (so operators can filter in the Temporal UI).
An answer that stayed invalid after its repair comes back as needs_review: a person decides.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from steward.search_attributes import LLM_COST_USD, LLM_TOKENS

with workflow.unsafe.imports_passed_through():
    from activities.llm import errors
    from activities.llm.activity import run_llm_task
    from activities.llm.models import LlmCallRecord, LlmTaskRequest, LlmTaskResult, LlmUsage

MEMO_KEY = "llm"
# Two model calls (answer and repair) at up to STEWARD_LLM_TIMEOUT_S each, plus budget waits.
LLM_STEP_TIMEOUT = timedelta(minutes=5)
# The activity heartbeats every 5 s; a worker silent for 30 s is gone and the step moves on.
LLM_HEARTBEAT_TIMEOUT = timedelta(seconds=30)
# Models and their gateways fail in bursts: back off to a minute, then let a person look.
LLM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=6,
    non_retryable_error_types=list(errors.NON_RETRYABLE),
)


class LlmLedger:
    def __init__(self) -> None:
        self.usage = LlmUsage()

    async def run(self, request: LlmTaskRequest, *, summary: str | None = None) -> LlmTaskResult:
        try:
            result = await workflow.execute_activity(
                run_llm_task,
                request,
                start_to_close_timeout=LLM_STEP_TIMEOUT,
                heartbeat_timeout=LLM_HEARTBEAT_TIMEOUT,
                retry_policy=LLM_RETRY,
                summary=summary,  # what the Temporal UI shows for the activity
            )
        except ActivityError as err:
            cause = err.cause
            if not (isinstance(cause, ApplicationError) and cause.type in errors.ROUTE_TO_REVIEW and cause.details):
                raise
            record = LlmCallRecord.model_validate(cause.details[0])
            result = LlmTaskResult(record=record, needs_review=True, review_reasons=[cause.message])
        self.keep(result.record)
        return result

    def keep(self, record: LlmCallRecord) -> None:
        """Add a call to the run's ledger: its memo and its token and cost search attributes."""
        usage = self.usage
        usage.records.append(record)
        usage.tokens += record.input_tokens + record.output_tokens
        usage.cost_usd = round(usage.cost_usd + record.cost_usd, 8)
        workflow.upsert_search_attributes([LLM_TOKENS.value_set(usage.tokens), LLM_COST_USD.value_set(usage.cost_usd)])
        workflow.upsert_memo({MEMO_KEY: usage.model_dump(mode="json")})

"""The interpreter of declarative workflows (workflows/definition.py): one dynamic workflow runs
every definition, each under its own workflow type (the definition's id), so the API's listing,
filters, audit and events treat them like code workflows.

Steps run wave by wave (workflows/definition.py:waves): a step starts when every step of the
wave before has finished, which keeps a run's order easy to read in its history. When a step
fails, the compensations registered by the steps before it run newest first (workflows/saga.py)
and the run fails naming the step and what was undone.

The definition travels in the run's input with its SHA-256, so a running instance keeps the
definition it started with whatever happens to the file.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, RootModel, model_validator
from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.workflow import ParentClosePolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    import cel
    from jsonschema import Draft202012Validator

    from activities.http_call import HttpCallRequest, http_call
    from activities.llm.activity import run_llm_task
    from activities.llm.models import LlmTaskRequest, UntrustedText
    from activities.notify.message import Notice

from steward.search_attributes import for_new_run
from workflows.approvals import ApprovalRequest, ApprovalsMixin, LadderStep
from workflows.definition import EXPRESSION, Action, Step, WorkflowDefinition, parse_duration, waves
from workflows.llm_steps import LlmLedger
from workflows.notifications import CHANNEL_ACTIVITIES, ChannelTarget, deliver_notice
from workflows.saga import COMPENSATION_RETRY, Saga, describe_compensations
from workflows.spec import WorkflowSpec
from workflows.stage import enter_stage

EVENT_SIGNAL = "steward.event"
DEFAULT_ACTIVITY_TIMEOUT = timedelta(minutes=5)
DEFAULT_RETRY = RetryPolicy(maximum_attempts=3)
INVALID_DEFINITION = "DefinitionInvalid"
INVALID_INPUT = "InputInvalid"
STEP_FAILED = "StepFailed"
WAIT_TIMED_OUT = "WaitTimedOut"


def definition_digest(definition: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(definition, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class DeclarativeInput(BaseModel):
    definition: dict[str, Any] = Field(description="The definition the run started with.")
    definition_sha256: str
    input: dict[str, Any] = Field(default_factory=dict)


class ExternalEvent(BaseModel):
    name: str
    payload: dict[str, Any] = Field(default_factory=dict)


class StepOutcome(BaseModel):
    status: Literal["completed", "skipped"]
    output: Any = None


class DeclarativeResult(BaseModel):
    """What a declarative run returns: `output` is what the definition's `output` says (every step's
    output when it says nothing), beside each step's outcome and the definition's SHA-256."""

    definition: str
    definition_sha256: str
    output: Any
    steps: dict[str, StepOutcome]


def evaluate(expression: str, context: dict[str, Any]) -> Any:
    try:
        return cel.evaluate(expression, context)
    except Exception as error:  # the library raises ValueError, ZeroDivisionError, ...
        raise ApplicationError(f"expression {expression!r} failed: {error}", type=STEP_FAILED,
                               non_retryable=True) from None


def render(value: Any, context: dict[str, Any]) -> Any:
    """A block's values with their `${{ }}` expressions evaluated."""
    if isinstance(value, str):
        whole = EXPRESSION.fullmatch(value.strip())
        if whole:
            return evaluate(whole.group(1).strip(), context)
        return EXPRESSION.sub(lambda m: _text(evaluate(m.group(1).strip(), context)), value)
    if isinstance(value, dict):
        return {key: render(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, context) for item in value]
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


@workflow.defn(dynamic=True)
class DeclarativeWorkflow(ApprovalsMixin):
    def __init__(self) -> None:
        self.events: dict[str, dict[str, Any]] = {}
        self.outcomes: dict[str, StepOutcome] = {}
        self.ledger = LlmLedger()

    @workflow.signal(name=EVENT_SIGNAL)
    def on_event(self, event: ExternalEvent) -> None:
        self.events.setdefault(event.name, event.payload)  # the first report counts

    @workflow.run
    async def run(self, args: Sequence[RawValue]) -> dict[str, Any]:
        request = workflow.payload_converter().from_payload(args[0].payload, DeclarativeInput)
        if definition_digest(request.definition) != request.definition_sha256:
            raise ApplicationError("the definition does not match its SHA-256", type=INVALID_DEFINITION,
                                   non_retryable=True)
        definition = WorkflowDefinition.model_validate(request.definition)
        problems = [e.message for e in Draft202012Validator(definition.input).iter_errors(request.input)]
        if problems:
            raise ApplicationError(f"the input does not fit the definition: {problems[0]}", type=INVALID_INPUT,
                                   non_retryable=True)
        info = workflow.info()
        self.base = {"input": request.input, "run": {"id": info.workflow_id,
                                                      "requested_by": workflow.memo_value("requested_by", ""),
                                                      "tenant": workflow.memo_value("tenant", "")}}
        steps = {step.name: step for step in definition.steps}
        self.saga = Saga()
        try:
            for wave in waves(definition):  # each wave's steps only need earlier waves'
                await asyncio.gather(*(self._run_step(steps[name]) for name in wave))
        except (ApplicationError, ActivityError, ChildWorkflowError, asyncio.CancelledError) as error:
            if not self.saga.registered:
                raise
            enter_stage("compensating", "Undoing what the steps before did")
            undone = describe_compensations(await self.saga.compensate())
            if isinstance(error, asyncio.CancelledError):
                raise
            raise ApplicationError(f"a step failed ({_reason(error)}); {undone}", type=STEP_FAILED,
                                   non_retryable=True) from error
        enter_stage("done")
        output = (evaluate(definition.output, self._context()) if definition.output is not None
                  else {name: outcome.output for name, outcome in self.outcomes.items()})
        await workflow.wait_condition(workflow.all_handlers_finished)
        return DeclarativeResult(definition=definition.id, definition_sha256=request.definition_sha256,
                                 output=output, steps=self.outcomes).model_dump(mode="json")

    def _context(self, **extra: Any) -> dict[str, Any]:
        steps = {name: {"output": o.output, "status": o.status} for name, o in self.outcomes.items()}
        return {**self.base, "steps": steps, **extra}

    async def _run_step(self, step: Step) -> None:
        if step.when is not None and not evaluate(step.when, self._context()):
            self.outcomes[step.name] = StepOutcome(status="skipped")
            return
        enter_stage(step.name, f"Step: {step.name}" + (f" ({step.description})" if step.description else ""))
        if step.compensate is not None:
            compensation, context = step.compensate, self._context()

            async def undo() -> str:  # registered before the step runs: it may happen even if it seems to fail
                await self._perform(step, compensation, context, key=f"{step.name}-undo", retry=COMPENSATION_RETRY)
                return f"{step.name} undone ({compensation.block})"

            self.saga.on_failure_run(step.name, undo)
        if step.for_each is None:
            output = await self._perform(step, step, self._context(), key=step.name)
        else:
            items = evaluate(step.for_each, self._context())
            if not isinstance(items, list):
                raise ApplicationError(f"step {step.name}: for_each gave {type(items).__name__}, not a list",
                                       type=STEP_FAILED, non_retryable=True)
            limit = asyncio.Semaphore(step.concurrency)

            async def one(index: int, item: Any) -> Any:
                async with limit:
                    return await self._perform(step, step, self._context(item=item, index=index),
                                               key=f"{step.name}-{index}")

            output = list(await asyncio.gather(*(one(i, item) for i, item in enumerate(items))))
        self.outcomes[step.name] = StepOutcome(status="completed", output=output)

    async def _perform(self, step: Step, action: Action, context: dict[str, Any], *, key: str,
                       retry: RetryPolicy | None = None) -> Any:
        block = action.block
        timeout = parse_duration(step.timeout) if step.timeout else DEFAULT_ACTIVITY_TIMEOUT
        retry = retry or _retry_policy(step) or DEFAULT_RETRY
        if block == "sleep":
            assert action.sleep is not None
            await workflow.sleep(parse_duration(action.sleep))
            return None
        if block == "activity":
            return await workflow.execute_activity(
                action.activity, render(action.input or {}, context), start_to_close_timeout=timeout,
                retry_policy=retry)
        if block == "http":
            assert action.http is not None
            spec = render(action.http.model_dump(by_alias=True), context)
            result = await workflow.execute_activity(
                http_call, HttpCallRequest(method=spec["method"], url=spec["url"], json_body=spec.get("json"),
                                           expect=spec["expect"],
                                           idempotency_key=f"{workflow.info().workflow_id}/{key}"),
                start_to_close_timeout=timeout, retry_policy=retry)
            return {"status_code": result.status_code, "body": result.body}
        if block == "llm":
            assert action.llm is not None and action.llm.task is not None  # checked when loaded
            spec = render(action.llm.model_dump(), context)
            result = await self.ledger.run(LlmTaskRequest(
                task=spec["task"], step=key, facts=spec.get("facts") or {},
                untrusted=[UntrustedText(name=str(name), text=_text(text))
                           for name, text in (spec.get("untrusted") or {}).items()],
                tenant=workflow.memo_value("tenant", None) or None))
            return {"answer": result.answer, "needs_review": result.needs_review,
                    "review_reasons": result.review_reasons}
        if block == "notify":
            assert action.notify is not None
            spec = render(action.notify.model_dump(), context)
            targets = [ChannelTarget(channel=channel, to=spec.get("to")) for channel in spec["channels"]]
            notice = Notice(title=spec["title"], lines=spec.get("lines") or [],
                            fields=[(str(k), _text(v)) for k, v in (spec.get("fields") or {}).items()])
            records = await deliver_notice(targets, notice, event_type="declarative.notify", step=key)
            return {"delivered": any(r.delivered for r in records),
                    "channel": next((r.channel for r in records if r.delivered), None)}
        if block == "approval":
            assert action.approval is not None
            spec = render(action.approval.model_dump(), context)
            ladder = ([LadderStep(after=parse_duration(spec["timeout"]), action="decide",
                                  decision=spec["on_timeout"], reason="nobody decided in time")]
                      if spec.get("timeout") else [])
            outcome = await self.request_approval(ApprovalRequest(
                key=key.replace("_", "-"), title=spec["title"], summary=spec["summary"], roles=spec["roles"],
                group=spec.get("group"), quorum=spec["quorum"], shown=spec.get("shown") or {}, ladder=ladder))
            return {"approved": outcome.approved, "status": outcome.status, "decided_by": outcome.decided_by}
        if block == "workflow":
            assert action.workflow is not None
            tenant = workflow.memo_value("tenant", "")
            requested_by = workflow.memo_value("requested_by", "")
            # The same tenant and requester: the child is listed and followed through the API like
            # any run the tenant started. It runs on the default task queue.
            return await workflow.execute_child_workflow(
                action.workflow.name, render(action.workflow.input, context),
                id=f"{workflow.info().workflow_id}-{key}", parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
                memo={"tenant": tenant, "requested_by": requested_by, "parent_run": workflow.info().workflow_id},
                search_attributes=for_new_run(action.workflow.name, tenant, requested_by))
        if block == "wait_for":
            assert action.wait_for is not None
            name = action.wait_for.event
            try:
                await workflow.wait_condition(lambda: name in self.events,
                                              timeout=parse_duration(action.wait_for.timeout))
            except TimeoutError:
                raise ApplicationError(f"step {step.name}: no {name!r} event within {action.wait_for.timeout}",
                                       type=WAIT_TIMED_OUT, non_retryable=True) from None
            return self.events[name]
        raise ApplicationError(f"step {step.name}: the {block} block is not supported yet", type=STEP_FAILED,
                               non_retryable=True)


def _reason(error: BaseException) -> str:
    cause = error.cause if isinstance(error, (ActivityError, ChildWorkflowError)) else error
    return getattr(cause, "message", None) or str(cause)


def _retry_policy(step: Step) -> RetryPolicy | None:
    if step.retry is None:
        return None
    return RetryPolicy(
        initial_interval=parse_duration(step.retry.initial_interval),
        backoff_coefficient=step.retry.backoff_coefficient,
        maximum_interval=parse_duration(step.retry.maximum_interval) if step.retry.maximum_interval else None,
        maximum_attempts=step.retry.maximum_attempts,
        non_retryable_error_types=step.retry.non_retryable_error_types,
    )


# --- definitions in the catalog -----------------------------------------------------------------

# Every activity a definition's platform blocks call: the worker hosts them on the default queue.
DECLARATIVE_ACTIVITIES = (http_call, run_llm_task, *CHANNEL_ACTIVITIES)


def input_model_for(definition: WorkflowDefinition) -> type[BaseModel]:
    """A model whose validation is the definition's JSON Schema, and whose JSON Schema is it too,
    so GET /v1/workflows shows it and POST .../runs checks it like a code workflow's model."""
    schema = definition.input
    checker = Draft202012Validator(schema)

    class DeclarativeInputModel(RootModel[dict[str, Any]]):
        @model_validator(mode="after")
        def fits(self) -> DeclarativeInputModel:
            for error in sorted(checker.iter_errors(self.root), key=lambda e: list(e.absolute_path)):
                where = ".".join(str(part) for part in error.absolute_path)
                raise ValueError(f"{where + ': ' if where else ''}{error.message}")
            return self

        @classmethod
        def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
            return dict(schema)

    DeclarativeInputModel.__name__ = f"Input_{definition.id.replace('-', '_')}"
    return DeclarativeInputModel


def spec_for(definition: WorkflowDefinition) -> WorkflowSpec:
    raw = definition.model_dump(mode="json", by_alias=True, exclude_none=True)
    digest = definition_digest(raw)
    return WorkflowSpec(
        name=definition.id, description=definition.description or f"Declarative workflow {definition.id}.",
        workflow=DeclarativeWorkflow, input_model=input_model_for(definition), output_model=DeclarativeResult,
        activities=DECLARATIVE_ACTIVITIES, tags=("declarative",),
        summary=lambda _: definition.description or definition.id,
        start_argument=lambda validated: DeclarativeInput(definition=raw, definition_sha256=digest,
                                                          input=validated.root),  # type: ignore[attr-defined]
    )

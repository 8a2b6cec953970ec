"""The interpreter of declarative workflows (workflows/definition.py): one dynamic workflow runs
every definition, each under its own workflow type (the definition's id), so the API's listing,
filters, audit and events treat them like code workflows.

A step starts as soon as every step it needs has finished; steps whose needs are met run at
once, started in the order written, so the same history always comes from the same definition.
When a step fails, the steps still running are cancelled, the compensations registered so far run
newest first (workflows/saga.py) and the run fails naming the step and what was undone.

The definition travels in the run's input with its SHA-256 — and so do the definitions of the
declarative workflows it starts as children — so a running instance keeps what it started with
whatever happens to the files.
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

    from activities.artifacts.store import ArtifactRef
    from activities.compliance.steps import RESULT_TYPES, STEP_ACTIVITIES
    from activities.http_call import HttpCallRequest, http_call
    from activities.llm.activity import run_llm_task
    from activities.llm.models import LlmTaskRequest, LlmTaskResult, UntrustedText
    from activities.step_context import RunContext, StepContext
    from activities.notify.message import Notice

from steward.search_attributes import for_new_run
from workflows.artifacts import record_artifacts
from workflows.approvals import ApprovalRequest, ApprovalsMixin, LadderStep
from workflows.definition import EXPRESSION, Action, Step, WorkflowDefinition, parse_duration, waves
from workflows.llm_steps import LlmLedger
from workflows.notifications import CHANNEL_ACTIVITIES, ChannelTarget, deliver_notice
from workflows.saga import COMPENSATION_RETRY, Saga, describe_compensations
from workflows.spec import DEFAULT_TASK_QUEUE, WorkflowSpec, cpu_task_queue
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


class ChildWorkflow(BaseModel):
    """A cataloged workflow a definition starts as a child, as the catalog knew it when the run started."""

    task_queue: str
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"},
                                         description="Checked before the child starts: a child that cannot "
                                                     "read its input would never start.")
    definition: dict[str, Any] | None = Field(None, description="A declarative child's definition.")


class DeclarativeInput(BaseModel):
    definition: dict[str, Any] = Field(description="The definition the run started with.")
    definition_sha256: str
    input: dict[str, Any] = Field(default_factory=dict)
    children: dict[str, ChildWorkflow] = Field(
        default_factory=dict, description="Every workflow the definition (and its declarative children) may "
                                          "start, by name.")
    cpu_activities: list[str] = Field(default_factory=list, description="Activities served on the CPU task "
                                                                        "queue (plain `def`s: workers/cpu.py).")


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
        self.definition_id = definition.id
        self.children = request.children
        self.cpu_activities = set(request.cpu_activities)
        self.saga = Saga()
        try:
            await self._run_graph(definition)
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

    async def _run_graph(self, definition: WorkflowDefinition) -> None:
        """Each step as soon as its needs have finished. The first failure cancels the steps still
        running and is raised once they have stopped (their compensations are registered by then)."""
        waves(definition)  # checked when loaded; a cycle here would wait forever
        waiting = {step.name: (step, set(definition.needs_of(step))) for step in definition.steps}
        running: dict[str, asyncio.Task[None]] = {}
        finished: set[str] = set()
        try:
            while waiting or running:
                for name, (step, needs) in list(waiting.items()):  # in the order written: deterministic
                    if needs <= finished:
                        del waiting[name]
                        running[name] = asyncio.ensure_future(self._run_step(step))
                await workflow.wait_condition(lambda: any(task.done() for task in running.values()))
                for name, task in list(running.items()):
                    if task.done():
                        del running[name]
                        task.result()  # a failed step raises here
                        finished.add(name)
        finally:
            for task in running.values():
                task.cancel()
            if running:
                await asyncio.gather(*running.values(), return_exceptions=True)

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
            assert action.activity is not None
            return await self._activity(action.activity, action.input, context, key, timeout, retry)
        if block == "http":
            assert action.http is not None
            spec = render(action.http.model_dump(by_alias=True), context)
            result = await workflow.execute_activity(
                http_call, HttpCallRequest(method=spec["method"], endpoint=spec.get("endpoint"), url=spec["url"],
                                           json_body=spec.get("json"),
                                           expect=spec["expect"],
                                           idempotency_key=f"{workflow.info().workflow_id}/{key}"),
                start_to_close_timeout=timeout, retry_policy=retry, summary=f"{key}: {spec['method']}")
            return {"status_code": result.status_code, "url": result.url, "body": result.body}
        if block == "llm":
            assert action.llm is not None
            spec = render(action.llm.model_dump(), context)
            own = spec.get("prompt") is not None  # the definition's own task, recorded under its step
            result = await self.ledger.run(LlmTaskRequest(
                task=f"{self.definition_id}.{step.name}" if own else spec["task"], step=key,
                instructions=spec.get("prompt"), output_schema=action.llm.output_schema if own else None,
                facts=spec.get("facts") or {},
                untrusted=[UntrustedText(name=str(name), text=_text(text))
                           for name, text in (spec.get("untrusted") or {}).items()],
                tenant=workflow.memo_value("tenant", None) or None), summary=key)
            # With the facts it was given: a later step tells a fan-out's results apart by them.
            return {"answer": result.answer, "needs_review": result.needs_review,
                    "review_reasons": result.review_reasons, "facts": spec.get("facts") or {}}
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
            return await self._start_child(action.workflow.name, render(action.workflow.input, context), key)
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

    async def _activity(self, name: str, given: dict[str, Any] | None, context: dict[str, Any], key: str,
                        timeout: timedelta, retry: RetryPolicy) -> Any:
        """A registered activity: with its `input`, or — the seed's shape — with the step context."""
        argument: Any = render(given, context) if given is not None else StepContext(
            step=key, input=context["input"], run=RunContext.model_validate(context["run"]),
            steps={name: step["output"] for name, step in context["steps"].items() if step["status"] == "completed"})
        queue = cpu_task_queue(workflow.info().task_queue) if name in self.cpu_activities else None
        output = await workflow.execute_activity(
            name, argument, task_queue=queue, start_to_close_timeout=timeout, retry_policy=retry,
            result_type=RESULT_TYPES.get(name), summary=f"{key}: {name}")
        if isinstance(output, LlmTaskResult):
            self.ledger.keep(output.record)  # in the run's ledger, like an llm step's
        if isinstance(output, ArtifactRef):
            record_artifacts([output])  # GET /v1/runs/{id}/artifacts/{name}
        return output.model_dump(mode="json") if isinstance(output, BaseModel) else output

    async def _start_child(self, name: str, child_input: dict[str, Any], key: str) -> Any:
        child = self.children.get(name)
        if child is None:  # the catalog had it when the definition was checked, not when this run started
            raise ApplicationError(f"step {key}: no cataloged workflow {name!r} when this run started",
                                   type=STEP_FAILED, non_retryable=True)
        problems = [e.message for e in Draft202012Validator(child.input_schema).iter_errors(child_input)]
        if problems:
            raise ApplicationError(f"step {key}: the input does not fit {name}: {problems[0]}", type=INVALID_INPUT,
                                   non_retryable=True)
        argument: Any = child_input
        if child.definition is not None:  # declarative: the definition travels, as it does for this run
            argument = DeclarativeInput(definition=child.definition, definition_sha256=definition_digest(
                child.definition), input=child_input, children=self.children)
        tenant = workflow.memo_value("tenant", "")
        requested_by = workflow.memo_value("requested_by", "")
        # The same tenant and requester: the child is listed and followed through the API like any
        # run the tenant started, on the task queue its workers poll.
        return await workflow.execute_child_workflow(
            name, argument, id=f"{workflow.info().workflow_id}-{key}", task_queue=child.task_queue,
            parent_close_policy=ParentClosePolicy.REQUEST_CANCEL, static_summary=f"{key} of {self.definition_id}",
            memo={"tenant": tenant, "requested_by": requested_by, "parent_run": workflow.info().workflow_id,
                  **({"definition_sha256": argument.definition_sha256}
                     if isinstance(argument, DeclarativeInput) else {})},
            search_attributes=for_new_run(name, tenant, requested_by))


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
DECLARATIVE_ACTIVITIES = (http_call, run_llm_task, *CHANNEL_ACTIVITIES, *STEP_ACTIVITIES)


def input_model_for(definition: WorkflowDefinition) -> type[BaseModel]:
    """A model whose validation is the definition's JSON Schema, and whose JSON Schema is it too,
    so GET /v1/workflows shows it and POST .../runs checks it like a code workflow's model."""
    schema = definition.input
    # Formats (date, email, ...) are assertions here, as the schema's readers expect.
    checker = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)

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


def definition_data(definition: WorkflowDefinition) -> dict[str, Any]:
    """The definition as it travels in a run: what its SHA-256 is taken over."""
    return definition.model_dump(mode="json", by_alias=True, exclude_none=True)


def child_workflows(definition: WorkflowDefinition, code: dict[str, WorkflowSpec],
                    definitions: dict[str, WorkflowDefinition]) -> dict[str, ChildWorkflow]:
    """Every workflow a run of `definition` may start — its children, their children, ... — as the
    catalog knows them now: a run carries this, so what it starts does not change under it."""
    found: dict[str, ChildWorkflow] = {}
    todo = [definition]
    while todo:
        for step in todo.pop().steps:
            for action in (step, step.compensate):
                if action is None or action.workflow is None or action.workflow.name in found:
                    continue
                name = action.workflow.name
                if name in definitions:
                    found[name] = ChildWorkflow(task_queue=DEFAULT_TASK_QUEUE, input_schema=definitions[name].input,
                                                definition=definition_data(definitions[name]))
                    todo.append(definitions[name])
                elif name in code:
                    found[name] = ChildWorkflow(task_queue=code[name].task_queue,
                                                input_schema=code[name].input_model.model_json_schema())
    return found


def spec_for(definition: WorkflowDefinition, children: dict[str, ChildWorkflow] | None = None,
             cpu_activities: Sequence[str] = ()) -> WorkflowSpec:
    """The definition as a catalog entry. `children`: the workflows its runs may start, by name;
    `cpu_activities`: the activities served on the CPU task queue."""
    raw = definition_data(definition)
    digest = definition_digest(raw)
    children = dict(children or {})
    return WorkflowSpec(
        name=definition.id, description=definition.description or f"Declarative workflow {definition.id}.",
        workflow=DeclarativeWorkflow, input_model=input_model_for(definition), output_model=DeclarativeResult,
        activities=DECLARATIVE_ACTIVITIES, tags=("declarative",),
        # The Temporal UI's one line: which definition, and what it does.
        summary=lambda _: f"{definition.id}: {definition.description}" if definition.description else definition.id,
        start_argument=lambda validated: DeclarativeInput(
            definition=raw, definition_sha256=digest, children=children, cpu_activities=sorted(cpu_activities),
            input=validated.root),  # type: ignore[attr-defined]
        memo={"definition_sha256": digest},
    )

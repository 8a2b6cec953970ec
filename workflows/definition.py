"""Declarative workflow definitions: the format (docs/declarative-workflows.md).

A definition is YAML: `workflow: {id, description, input, output?, steps}`. Each step calls one
building block — a registered activity by its Temporal name, or a platform block (`llm`,
`approval`, `notify`, `http`, `workflow`, `wait_for`, `sleep`) — and may say when it runs
(`needs`, `when`), over what (`for_each`), for how long (`timeout`), how it retries (`retry`)
and how it is undone (`compensate`).

Expressions are CEL (Common Expression Language): `when`, `for_each` and `output` are one
expression each; any string value inside a block may embed expressions as `${{ expr }}`. A string
that is exactly one `${{ expr }}` takes the expression's value, whatever its type; otherwise the
values are formatted into the text. Expressions see `input`, `steps.<name>.output`, `run` (id,
requested_by, tenant) and, inside `for_each`, `item` and `index`.

This module is pure: the models, the expressions found in a definition, and the order of steps.
Reading files with line numbers and checking a definition against the platform's blocks is
workflows/definition_check.py's.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

STEP_NAME = r"^[a-z][a-z0-9_]*$"
DEFINITION_ID = r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$"
EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
# A seed-shaped definition names its activities in CamelCase (ExtractApplicantData): the activity
# block takes any registered Temporal activity name as written.
ACTIVITY_NAME = r"^[A-Za-z][A-Za-z0-9_.:-]*$"
DURATION = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")
MAX_FOR_EACH_CONCURRENCY = 50


def parse_duration(text: str) -> timedelta:
    """`90s`, `5m`, `1h30m`: the durations a definition writes."""
    match = DURATION.match(text.strip())
    if not text.strip() or match is None or not any(match.groupdict().values()):
        raise ValueError(f"{text!r} is not a duration such as 30s, 5m or 1h30m")
    parts = {k: int(v) for k, v in match.groupdict().items() if v}
    return timedelta(hours=parts.get("h", 0), minutes=parts.get("m", 0), seconds=parts.get("s", 0))


Duration = Annotated[str, Field(pattern=r"^(\d+h)?(\d+m)?(\d+s)?$", min_length=2,
                                description="A duration: 30s, 5m, 1h30m.")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetrySpec(_Strict):
    """Temporal's retry policy fields."""

    initial_interval: Duration = "1s"
    backoff_coefficient: float = Field(2.0, ge=1.0)
    maximum_interval: Duration | None = None
    maximum_attempts: int = Field(3, ge=0, description="0: no limit.")
    non_retryable_error_types: list[str] = Field(default_factory=list)


class LlmBlock(_Strict):
    """A task of the LLM layer (docs/llm.md), with its schema and review rules: a shipped task by
    name, or a prompt and the JSON Schema its answer must fit."""

    task: str | None = Field(None, description="A shipped task: risk-classification, summary, ...")
    prompt: str | None = Field(None, max_length=8000, description="Instructions, for a task of the definition's own.")
    output_schema: dict[str, Any] | None = Field(None, description="The JSON Schema the answer must fit.")
    facts: dict[str, Any] = Field(default_factory=dict, description="Trusted facts the prompt may use.")
    untrusted: dict[str, Any] = Field(default_factory=dict, description="Texts from outside (documents, "
                                                                        "records): fenced, screened for injection.")

    @model_validator(mode="after")
    def one_kind(self) -> LlmBlock:
        if (self.task is None) == (self.prompt is None):
            raise ValueError("name a shipped `task`, or give a `prompt` with its `output_schema`")
        if self.prompt is not None and self.output_schema is None:
            raise ValueError("a `prompt` needs the `output_schema` its answer must fit")
        return self


class ApprovalBlock(_Strict):
    """The approval mechanism (docs/approvals.md): who decides, how many, and the timeout ladder."""

    title: str = Field(max_length=200)
    summary: str = Field(max_length=4000)
    roles: list[str] = Field(default_factory=lambda: ["approver"], min_length=1)
    group: str | None = None
    quorum: int = Field(1, ge=1)
    shown: dict[str, Any] = Field(default_factory=dict, description="The records the approver sees.")
    timeout: Duration | None = Field(None, description="Decided by `on_timeout` when nobody decided by then.")
    on_timeout: Literal["approve", "reject"] = "reject"


class NotifyBlock(_Strict):
    """A message on the platform's channels, in order until one delivers."""

    channels: list[Literal["email", "slack", "webhook"]] = Field(min_length=1)
    to: str | None = Field(None, description="email: the address.")
    title: str = Field(max_length=200)
    lines: list[str] = Field(default_factory=list)
    fields: dict[str, Any] = Field(default_factory=dict)


class HttpBlock(_Strict):
    """One call to an external API. The URL comes from input or from a setting; the request carries
    an Idempotency-Key derived from the run and the step."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    endpoint: str | None = Field(None, pattern=r"^[a-z][a-z0-9_-]*$",
                                 description="A base URL from the STEWARD_HTTP_ENDPOINTS setting, by name: `url` "
                                             "is then a path under it.")
    url: str = Field(description="The URL (a path under `endpoint` when one is named), or an expression that "
                                 "gives it (input, a previous step).")
    json_body: Any = Field(None, alias="json", description="The JSON body.")
    expect: list[int] = Field(default_factory=lambda: [200, 201, 202, 204], min_length=1,
                              description="Statuses that mean success; any other fails the step.")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ChildWorkflowBlock(_Strict):
    name: str = Field(description="A cataloged workflow, code or declarative.")
    input: dict[str, Any] = Field(default_factory=dict)


class WaitForBlock(_Strict):
    """Wait for an event posted to POST /v1/runs/{id}/events/{event}: how a job in another system
    reports back."""

    event: str = Field(pattern=STEP_NAME)
    timeout: Duration


Block = Literal["activity", "llm", "approval", "notify", "http", "workflow", "wait_for", "sleep"]
BLOCKS: tuple[Block, ...] = ("activity", "llm", "approval", "notify", "http", "workflow", "wait_for", "sleep")


class Action(_Strict):
    """One building block and its input: what a step (or its compensation) does."""

    activity: str | None = Field(None, pattern=ACTIVITY_NAME, description="A registered activity's Temporal name.")
    input: dict[str, Any] | None = Field(None, description="The activity's input.")
    llm: LlmBlock | None = None
    approval: ApprovalBlock | None = None
    notify: NotifyBlock | None = None
    http: HttpBlock | None = None
    workflow: ChildWorkflowBlock | None = None
    wait_for: WaitForBlock | None = None
    sleep: Duration | None = None

    @property
    def block(self) -> Block:
        return next(name for name in BLOCKS if getattr(self, name) is not None)

    @model_validator(mode="after")
    def exactly_one_block(self) -> Action:
        named = [name for name in BLOCKS if getattr(self, name) is not None]
        if len(named) != 1:
            raise ValueError(f"a step calls exactly one of {', '.join(BLOCKS)}; this one names "
                             f"{', '.join(named) or 'none'}")
        if self.input is not None and self.activity is None:
            raise ValueError("`input` belongs to an `activity` step; other blocks take their fields inside them")
        return self


class Step(Action):
    name: str = Field(pattern=STEP_NAME, description="Unique in the definition; steps.<name>.output in expressions.")
    description: str | None = None
    needs: list[str] | None = Field(None, description="Steps that must finish first. Without `needs` anywhere "
                                                      "in a definition, steps run in the order written.")
    when: str | None = Field(None, description="CEL: the step runs only when true; skipped otherwise.")
    for_each: str | None = Field(None, description="CEL giving a list: the step runs once per item (`item`, "
                                                   "`index`); its output is the list of results.")
    concurrency: int = Field(4, ge=1, le=MAX_FOR_EACH_CONCURRENCY, description="for_each: items at a time.")
    timeout: Duration | None = Field(None, description="One attempt's limit (start to close).")
    retry: RetrySpec | None = None
    compensate: Action | None = Field(None, description="Runs, in reverse order, when a later step fails.")


class WorkflowDefinition(_Strict):
    id: str = Field(pattern=DEFINITION_ID, max_length=80, description="The workflow's name in the catalog.")
    description: str | None = Field(None, max_length=300, description="One line for the catalog and the UI.")
    input: dict[str, Any] = Field(default_factory=lambda: {"type": "object"},
                                  description="JSON Schema of the input.")
    output: str | None = Field(None, description="CEL: the run's result; all steps' outputs when unset.")
    steps: list[Step] = Field(min_length=1)

    @field_validator("description")
    @classmethod
    def one_line(cls, value: str | None) -> str | None:
        if value is not None and "\n" in value.strip():
            raise ValueError("the description is one line (the catalog and the Temporal UI show it)")
        return value.strip() if value is not None else None

    @property
    def ordered(self) -> bool:
        """Seed-shaped: no step says what it needs, so steps run in the order written."""
        return all(step.needs is None for step in self.steps)

    def needs_of(self, step: Step) -> list[str]:
        if self.ordered:
            index = self.steps.index(step)
            return [self.steps[index - 1].name] if index else []
        return list(step.needs or [])


class DefinitionFile(_Strict):
    """The whole file: one workflow."""

    workflow: WorkflowDefinition


# --- expressions in a definition ----------------------------------------------------------------

def embedded(text: str) -> list[str]:
    """The `${{ expr }}` expressions in a string, stripped."""
    return [match.strip() for match in EXPRESSION.findall(text)]


def expressions(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], str]]:
    """Every `${{ }}` expression in a block's values, with where it is."""
    if isinstance(value, str):
        return [(path, expression) for expression in embedded(value)]
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in expressions(item, (*path, key))]
    if isinstance(value, list):
        return [found for index, item in enumerate(value) for found in expressions(item, (*path, index))]
    return []


# --- the order of steps -------------------------------------------------------------------------

class GraphError(ValueError):
    def __init__(self, message: str, step: str, field: str) -> None:
        super().__init__(message)
        self.step = step
        self.field = field


def waves(definition: WorkflowDefinition) -> list[list[str]]:
    """The steps in waves: each wave's steps need only steps of earlier waves, so they may run at
    once. Raises GraphError for a need that names no step, or a cycle."""
    names = [step.name for step in definition.steps]
    needs = {step.name: definition.needs_of(step) for step in definition.steps}
    for step in definition.steps:
        for need in needs[step.name]:
            if need not in needs:
                raise GraphError(f"step {step.name!r} needs {need!r}, which is no step of this workflow",
                                 step.name, "needs")
            if need == step.name:
                raise GraphError(f"step {step.name!r} needs itself", step.name, "needs")
    done: set[str] = set()
    order: list[list[str]] = []
    while len(done) < len(names):
        wave = [name for name in names if name not in done and set(needs[name]) <= done]
        if not wave:
            stuck = [name for name in names if name not in done]
            raise GraphError(f"steps {', '.join(stuck)} need each other in a cycle", stuck[0], "needs")
        order.append(wave)
        done |= set(wave)
    return order


def mermaid(definition: WorkflowDefinition) -> str:
    """The step graph as a Mermaid flowchart, for a pull request."""
    lines = ["flowchart TD"]
    for step in definition.steps:
        label = f"{step.name}<br/>{step.block}" + (f": {_block_target(step)}" if _block_target(step) else "")
        marks = [f"when {step.when}" if step.when else "", f"for each {step.for_each}" if step.for_each else ""]
        label += "".join(f"<br/><i>{_escaped(mark)}</i>" for mark in marks if mark)
        shape = ("{{", "}}") if step.block == "approval" else ("[", "]")
        lines.append(f'    {step.name}{shape[0]}"{_escaped(label)}"{shape[1]}')
    for step in definition.steps:
        for need in definition.needs_of(step):
            lines.append(f"    {need} --> {step.name}")
    for step in definition.steps:
        if step.compensate is not None:
            lines.append(f'    {step.name} -.->|undo| {step.name}_undo["{_escaped(step.compensate.block)}"]')
    return "\n".join(lines) + "\n"


def _block_target(action: Action) -> str | None:
    if action.activity:
        return action.activity
    if action.llm:
        return action.llm.task or "prompt"
    if action.workflow:
        return action.workflow.name
    if action.wait_for:
        return action.wait_for.event
    if action.sleep:
        return action.sleep
    if action.http:
        return action.http.method
    return None


def _escaped(text: str) -> str:
    return text.replace('"', "#quot;")

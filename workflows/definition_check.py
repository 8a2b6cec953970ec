"""Checking a declarative workflow definition (workflows/definition.py) the way an author needs:
every problem at once, each naming the file, line and column.

`check(text, source, blocks)` reads the YAML keeping where each value was written, validates it
against the format's models (which the published JSON Schema comes from), then checks what a
schema cannot: the step graph (unknown needs, cycles, duplicate names), that every expression
compiles as CEL and names only steps that have run before it, that each block exists (the
activity is registered, the LLM task is shipped, the child workflow is cataloged), that JSON
Schemas are JSON Schemas, and that an activity's literal input fits its model.

Pure: the caller reads the file and says which blocks exist (`Blocks`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_type_hints

import cel
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ValidationError
from temporalio import activity as temporal_activity

from activities.step_context import StepContext
from workflows.definition import (
    Action,
    DefinitionFile,
    GraphError,
    Step,
    WorkflowDefinition,
    expressions,
    waves,
)

Path = tuple[str | int, ...]
STEP_REFERENCE = re.compile(r"\bsteps\.([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class Blocks:
    """What a definition may call: activities by Temporal name (with their input model, when
    known), shipped LLM tasks, and cataloged workflows."""

    activities: Mapping[str, type[BaseModel] | None] = field(default_factory=dict)
    llm_tasks: frozenset[str] = frozenset()
    workflows: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Problem:
    source: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}:{self.column}: {self.field}: {self.message}"


@dataclass
class Checked:
    definition: WorkflowDefinition | None
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return self.definition is not None and not self.problems


def check(text: str, source: str, blocks: Blocks) -> Checked:
    try:
        data, positions = _load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return Checked(None, [Problem(source, line, column, "(yaml)", f"not valid YAML: {error.problem or error}")])
    where = _Locator(source, positions)
    try:
        definition = DefinitionFile.model_validate(data).workflow
    except ValidationError as error:
        return Checked(None, [
            where.problem(_pydantic_path(e["loc"]), _message(e), at_key=e["type"] == "extra_forbidden")
            for e in error.errors()])
    return Checked(definition, _semantics(definition, blocks, where))


def load_definition(text: str, source: str, blocks: Blocks) -> WorkflowDefinition:
    """The definition, or ValueError listing every problem (one per line)."""
    checked = check(text, source, blocks)
    if not checked.ok:
        raise ValueError("\n".join(str(p) for p in checked.problems))
    assert checked.definition is not None
    return checked.definition


# --- where things were written ------------------------------------------------------------------

def _load(text: str) -> tuple[Any, dict[Path, tuple[int, int]]]:
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    positions: dict[Path, tuple[int, int]] = {}
    if node is not None:
        _walk(node, (), positions)
    return yaml.safe_load(text), positions


def _walk(node: yaml.Node, path: Path, positions: dict[Path, tuple[int, int]]) -> None:
    positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, key.value)
            _walk(value, child, positions)
            positions[(*child, "__key__")] = (key.start_mark.line + 1, key.start_mark.column + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), positions)


@dataclass
class _Locator:
    source: str
    positions: dict[Path, tuple[int, int]]

    def problem(self, path: Path, message: str, *, at_key: bool = False) -> Problem:
        """A problem at `path`'s value (or its key: a field that should not be there)."""
        line, column = self.positions.get((*path, "__key__")) if at_key and (*path, "__key__") in self.positions \
            else self._position(path)
        return Problem(self.source, line, column, _dotted(path), message)

    def _position(self, path: Path) -> tuple[int, int]:
        # A key that is there points at its value; a missing one, at the nearest thing that is.
        for end in range(len(path), -1, -1):
            found = self.positions.get(path[:end])
            if found is not None:
                return found
        return 1, 1


def _dotted(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(file)"


def _pydantic_path(loc: tuple[Any, ...]) -> Path:
    return tuple(part for part in loc if not (isinstance(part, str) and part.startswith(("function-", "literal["))))


def _message(error: dict[str, Any]) -> str:
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return "is not a field here"
    return message


# --- what a schema cannot say -------------------------------------------------------------------

def _semantics(definition: WorkflowDefinition, blocks: Blocks, where: _Locator) -> list[Problem]:
    problems: list[Problem] = []
    base: Path = ("workflow",)
    step_path = {step.name: (*base, "steps", index) for index, step in enumerate(definition.steps)}

    seen: set[str] = set()
    for index, step in enumerate(definition.steps):
        if step.name in seen:
            problems.append(where.problem((*base, "steps", index, "name"), f"another step is named {step.name!r}"))
        seen.add(step.name)
    try:
        waves(definition)
    except GraphError as error:
        problems.append(where.problem((*step_path[error.step], error.field), str(error)))
        before: dict[str, set[str]] = {name: set(step_path) for name in step_path}  # unknown: assume all ran
    else:
        before = _ancestors(definition)

    try:
        Draft202012Validator.check_schema(definition.input)
    except SchemaError as error:
        problems.append(where.problem((*base, "input"), f"not a JSON Schema: {error.message}"))
    if definition.output is not None:
        problems += _expression(definition.output, (*base, "output"), set(step_path), where, whole=True)

    for step in definition.steps:
        path = step_path[step.name]
        ran = before.get(step.name, set())
        for key in ("when", "for_each"):
            text = getattr(step, key)
            if text is not None:
                problems += _expression(text, (*path, key), ran, where, whole=True)
        problems += _action(step, path, ran, blocks, where)
        if step.compensate is not None:
            problems += _action(step.compensate, (*path, "compensate"), ran | {step.name}, blocks, where)
    return problems


def _ancestors(definition: WorkflowDefinition) -> dict[str, set[str]]:
    """For each step, the steps that have finished before it starts (its needs, transitively)."""
    needs = {step.name: definition.needs_of(step) for step in definition.steps}
    memo: dict[str, set[str]] = {}

    def of(name: str) -> set[str]:
        if name not in memo:
            memo[name] = set()
            for need in needs[name]:
                memo[name] |= {need, *of(need)}
        return memo[name]

    return {name: of(name) for name in needs}


def _action(action: Action, path: Path, ran: set[str], blocks: Blocks, where: _Locator) -> list[Problem]:
    problems: list[Problem] = []
    block = action.block
    value = getattr(action, block)
    if isinstance(value, BaseModel):
        values = value.model_dump(by_alias=True, exclude_none=True)
    else:
        values = {"input": action.input} if block == "activity" and action.input else {}
    for inner, text in expressions(values):
        inside = () if block == "activity" else (block,)
        problems += _expression(text, (*path, *inside, *inner), ran, where)

    if block == "activity":
        if action.activity not in blocks.activities:
            problems.append(where.problem((*path, "activity"), f"no registered activity is named {action.activity!r}"))
        elif action.input is None and blocks.activities[action.activity] not in (None, StepContext):
            problems.append(where.problem((*path, "activity"), f"{action.activity} takes "
                                          f"{blocks.activities[action.activity].__name__}: give it an `input` (only "
                                          "a step-context activity runs without one)"))
        elif (model := blocks.activities[action.activity]) is not None and action.input is not None \
                and not expressions(action.input):
            try:
                model.model_validate(action.input)
            except ValidationError as error:
                for e in error.errors():
                    problems.append(where.problem((*path, "input", *_pydantic_path(e["loc"])), _message(e)))
    elif block == "llm":
        assert action.llm is not None
        if action.llm.task is not None and action.llm.task not in blocks.llm_tasks:
            known = ", ".join(sorted(blocks.llm_tasks)) or "none"
            problems.append(where.problem((*path, "llm", "task"),
                                          f"no LLM task {action.llm.task!r} (shipped: {known})"))
        if action.llm.prompt is not None and expressions(action.llm.prompt):
            # Values in the instructions could steer the model: data goes in facts or untrusted.
            problems.append(where.problem((*path, "llm", "prompt"), "the prompt is instructions only: put "
                                          "values in `facts` (trusted) or `untrusted` (fenced, screened)"))
        if action.llm.output_schema is not None:
            try:
                Draft202012Validator.check_schema(action.llm.output_schema)
                if action.llm.output_schema.get("type") != "object":
                    problems.append(where.problem((*path, "llm", "output_schema"),
                                                  "the answer is one JSON object: the schema needs `type: object`"))
            except SchemaError as error:
                problems.append(where.problem((*path, "llm", "output_schema"), f"not a JSON Schema: {error.message}"))
    elif block == "workflow":
        assert action.workflow is not None
        if action.workflow.name not in blocks.workflows:
            problems.append(where.problem((*path, "workflow", "name"),
                                          f"no cataloged workflow is named {action.workflow.name!r}"))
    return problems


def _expression(text: str, path: Path, ran: set[str], where: _Locator, *, whole: bool = False) -> list[Problem]:
    try:
        cel.compile(text)
    except ValueError as error:
        # The library's message: "... ERROR: <input>:1:15: Syntax error: ..." and a picture of where.
        detail = str(error).split("ERROR: <input>:", 1)[-1].strip().splitlines()[0]
        return [where.problem(path, f"not a CEL expression ({'' if whole else 'in ${{ }}, '}at {detail})")]
    problems = []
    for name in dict.fromkeys(STEP_REFERENCE.findall(text)):
        if name not in ran:
            problems.append(where.problem(path, f"uses steps.{name}, which has not run by then: add it to `needs`"))
    return problems


# --- the blocks this platform has ---------------------------------------------------------------

def activity_name(fn: Callable[..., Any]) -> str | None:
    """An activity's Temporal name (None for a dynamic activity)."""
    definition = temporal_activity._Definition.from_callable(fn)
    return definition.name if definition is not None else None


def blocks_of(catalog_activities: list[Callable[..., Any]], llm_tasks: list[str], workflows: list[str]) -> Blocks:
    """Blocks from the catalog's activities (their Temporal names and pydantic input models), the
    shipped LLM tasks and the cataloged workflows."""
    activities: dict[str, type[BaseModel] | None] = {}
    for fn in catalog_activities:
        name = activity_name(fn)
        if name is None:
            continue
        hints = [hint for name, hint in get_type_hints(fn).items() if name != "return"]
        model = hints[0] if len(hints) == 1 and isinstance(hints[0], type) and issubclass(hints[0], BaseModel) \
            else None
        activities[name] = model
    return Blocks(activities=activities, llm_tasks=frozenset(llm_tasks), workflows=frozenset(workflows))


__all__ = ["Blocks", "Checked", "Problem", "Step", "activity_name", "blocks_of", "check", "load_definition"]

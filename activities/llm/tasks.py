"""The LLM tasks Steward knows: each a versioned prompt and the JSON Schema of its answer.

A prompt is two files, prompts/<task>.<version>.system.txt and .user.txt, rendered with
string.Template. A declarative definition's own task (`task_for` a request with instructions) uses
the `inline` prompt, with the definition's instructions and answer schema in it. Untrusted text is
fenced between DATA markers whose label is derived from the text's own digest, so the text cannot
contain its own closing marker.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from string import Template
from typing import Any

from jsonschema import Draft202012Validator

from activities.llm.models import LlmTaskRequest, UntrustedText

_HERE = Path(__file__).parent


@dataclass(frozen=True)
class LlmTask:
    name: str
    prompt_version: str
    # Answer fields the ledger lifts into its record, when the task has them.
    decision_field: str | None = None
    confidence_field: str = "confidence"
    explanation_field: str = "explanation"
    # A definition's own task: its instructions, and its answer's schema as canonical JSON text.
    instructions: str | None = None
    inline_schema: str | None = None

    @property
    def inline(self) -> bool:
        return self.instructions is not None

    @property
    def prompt_template(self) -> str:
        return f"{INLINE_PROMPT}.{self.prompt_version}" if self.inline else f"{self.name}.{self.prompt_version}"

    @property
    def schema(self) -> dict[str, Any]:
        return json.loads(self.inline_schema) if self.inline_schema else _load_schema(self.name)

    @property
    def validator(self) -> Draft202012Validator:
        return _inline_validator(self.inline_schema) if self.inline_schema else _validator(self.name)

    def decision_of(self, answer: dict[str, Any]) -> str | None:
        if self.decision_field is None:
            return None
        value = answer.get(self.decision_field)
        if isinstance(value, list):  # e.g. hypotheses: the first one is the decision
            value = value[0].get("cause") if value and isinstance(value[0], dict) else None
        return None if value is None else str(value)


TASKS: dict[str, LlmTask] = {
    task.name: task
    for task in (
        LlmTask("risk-classification", "v1", decision_field="decision"),
        LlmTask("root-cause-hypotheses", "v2", decision_field="hypotheses"),
        LlmTask("summary", "v1"),
    )
}


INLINE_PROMPT = "inline"
INLINE_PROMPT_VERSION = "v1"


class InvalidTask(ValueError):
    """A definition's own task whose output schema is no JSON Schema."""


def task_for(request: LlmTaskRequest) -> LlmTask | None:
    """The task a request asks for: a shipped one by name, or the definition's own when the request
    carries instructions. None when no shipped task has that name."""
    if request.instructions is None:
        return TASKS.get(request.task)
    if request.output_schema is None:
        raise InvalidTask(f"task {request.task!r}: instructions need the output_schema the answer must fit")
    schema = json.dumps(request.output_schema, sort_keys=True)
    try:
        _inline_validator(schema)
    except Exception as error:  # SchemaError, or a $ref the validator cannot resolve
        raise InvalidTask(f"task {request.task!r}: the output_schema is not a JSON Schema: {error}") from None
    return LlmTask(request.task, INLINE_PROMPT_VERSION, instructions=request.instructions, inline_schema=schema)


@lru_cache(maxsize=256)
def _inline_validator(schema: str) -> Draft202012Validator:
    parsed = json.loads(schema)
    Draft202012Validator.check_schema(parsed)
    return Draft202012Validator(parsed)


@cache
def _load_schema(name: str) -> dict[str, Any]:
    schema = json.loads((_HERE / "schemas" / f"{name}.json").read_text())
    Draft202012Validator.check_schema(schema)
    return schema


@cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(_load_schema(name))


@cache
def _template(name: str) -> Template:
    return Template((_HERE / "prompts" / f"{name}.txt").read_text())


def fence(item: UntrustedText) -> str:
    label = hashlib.sha256(item.text.encode("utf-8")).hexdigest()[:16]
    return f"<<<DATA {label} name={json.dumps(item.name)}>>>\n{item.text}\n<<<END DATA {label}>>>"


@dataclass(frozen=True)
class RenderedPrompt:
    messages: list[dict[str, str]]
    sha256: str


def render(task: LlmTask, facts: dict[str, Any], untrusted: list[UntrustedText]) -> RenderedPrompt:
    system = _template(f"{task.prompt_template}.system").substitute(
        schema=json.dumps(task.schema, indent=1, sort_keys=True), instructions=task.instructions or ""
    )
    user = _template(f"{task.prompt_template}.user").substitute(
        facts=json.dumps(facts, indent=1, sort_keys=True, default=str),
        untrusted="\n\n".join(fence(u) for u in untrusted) or "(none)",
    )
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode("utf-8")).hexdigest()
    return RenderedPrompt(messages=messages, sha256=digest)

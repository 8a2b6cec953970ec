"""The LLM tasks Steward knows: each a versioned prompt and the JSON Schema of its answer.

A prompt is two files, prompts/<task>.<version>.system.txt and .user.txt, rendered with
string.Template. Untrusted text is fenced between DATA markers whose label is derived from the
text's own digest, so the text cannot contain its own closing marker.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from string import Template
from typing import Any

from jsonschema import Draft202012Validator

from activities.llm.models import UntrustedText

_HERE = Path(__file__).parent


@dataclass(frozen=True)
class LlmTask:
    name: str
    prompt_version: str
    # Answer fields the ledger lifts into its record, when the task has them.
    decision_field: str | None = None
    confidence_field: str = "confidence"
    explanation_field: str = "explanation"

    @property
    def prompt_template(self) -> str:
        return f"{self.name}.{self.prompt_version}"

    @property
    def schema(self) -> dict[str, Any]:
        return _load_schema(self.name)

    @property
    def validator(self) -> Draft202012Validator:
        return _validator(self.name)

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
        schema=json.dumps(task.schema, indent=1, sort_keys=True)
    )
    user = _template(f"{task.prompt_template}.user").substitute(
        facts=json.dumps(facts, indent=1, sort_keys=True, default=str),
        untrusted="\n\n".join(fence(u) for u in untrusted) or "(none)",
    )
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode("utf-8")).hexdigest()
    return RenderedPrompt(messages=messages, sha256=digest)

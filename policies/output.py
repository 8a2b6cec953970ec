"""The LLM output policy engine: size limits, deny-list patterns and allowed labels per task."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from policies.loader import POLICY_DIR, PolicyError, load_policy

DEFAULT_POLICY = POLICY_DIR / "llm-output.yaml"
SCHEMA = POLICY_DIR / "llm-output.schema.json"


@dataclass(frozen=True)
class TaskRules:
    max_chars: int
    deny_patterns: tuple[tuple[str, re.Pattern[str]], ...] = ()
    allowed_labels: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputPolicy:
    defaults: TaskRules
    tasks: dict[str, TaskRules]

    def rules_for(self, task: str) -> TaskRules:
        return self.tasks.get(task, self.defaults)

    def violations(self, task: str, answer: dict[str, Any]) -> list[str]:
        rules = self.rules_for(task)
        text = json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
        found = []
        if len(text) > rules.max_chars:
            found.append(f"answer is {len(text)} characters; the policy allows {rules.max_chars}")
        for name, pattern in rules.deny_patterns:
            if pattern.search(text):
                found.append(f"answer matches denied pattern {name!r}")
        for label, allowed in rules.allowed_labels.items():
            if label in answer and answer[label] not in allowed:
                found.append(f"{label} {answer[label]!r} is not one of {', '.join(allowed)}")
        return found


def _rules(raw: dict[str, Any], inherited: TaskRules | None, path: Path) -> TaskRules:
    patterns = list(inherited.deny_patterns) if inherited else []
    for entry in raw.get("deny_patterns", []):
        try:
            patterns.append((entry["name"], re.compile(entry["pattern"])))
        except re.error as exc:
            raise PolicyError(f"{path}: deny pattern {entry['name']!r} is not a valid regex: {exc}") from None
    return TaskRules(
        max_chars=raw.get("max_chars", inherited.max_chars if inherited else 8000),
        deny_patterns=tuple(patterns),
        allowed_labels={k: tuple(v) for k, v in raw.get("allowed_labels", {}).items()},
    )


def parse(path: Path) -> OutputPolicy:
    document = load_policy(path, SCHEMA)
    defaults = _rules(document["defaults"], None, path)
    # Task rules add to the defaults' deny list; limits and labels are the task's own.
    tasks = {name: _rules(raw, defaults, path) for name, raw in (document.get("tasks") or {}).items()}
    return OutputPolicy(defaults=defaults, tasks=tasks)


@cache
def load(path: Path | None = None) -> OutputPolicy:
    """The policy at `path` (the shipped one when None), parsed once per process."""
    return parse(path or DEFAULT_POLICY)

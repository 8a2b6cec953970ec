"""What every provider returns for one call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from activities.llm.models import LlmTaskRequest
from activities.llm.tasks import LlmTask


@dataclass(frozen=True)
class ProviderReply:
    content: str
    model_version: str
    input_tokens: int
    output_tokens: int


class Provider(Protocol):
    name: Literal["openai", "offline"]
    model: str
    # A remote endpoint enforces rate limits, so calls to it wait for the model's budget; a
    # provider that runs in the worker (the offline rules) has none to respect.
    rate_limited: bool
    # A model follows any instructions (a declarative definition's own task); rules answer the
    # shipped tasks only.
    follows_instructions: bool

    async def complete(
        self, task: LlmTask, request: LlmTaskRequest, messages: list[dict[str, Any]]
    ) -> ProviderReply: ...

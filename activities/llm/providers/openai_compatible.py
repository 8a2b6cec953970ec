"""Any OpenAI-compatible chat-completions endpoint: OpenAI, Azure OpenAI, Ollama, vLLM, llama.cpp.

The client's own retries are off: Temporal's retry policy owns retries, so each attempt is
visible in the Temporal UI. Failures become typed ApplicationErrors; provider error text is never
passed on, since some providers echo part of the API key in it.
"""

from __future__ import annotations

import email.utils
import re
import time
from datetime import timedelta
from typing import Any, Literal

import openai
from openai import AsyncOpenAI
from temporalio.exceptions import ApplicationError

from activities.llm import errors
from activities.llm.models import LlmTaskRequest
from activities.llm.providers.base import ProviderReply
from activities.llm.tasks import LlmTask

# Statuses that mean "this request, as configured, will never succeed".
_REJECTED_STATUSES = {400, 401, 403, 404, 422}
# Keywords OpenAI's strict structured outputs do not accept; our local validation enforces them.
_UNSUPPORTED_STRICT_KEYWORDS = {"minLength", "maxLength", "$schema", "title"}
# The endpoint names a schema with letters, digits, _ and - only (a definition's task has dots).
_WIRE_NAME = re.compile(r"[^A-Za-z0-9_-]")
# Without a Retry-After, wait this long after a 429.
DEFAULT_RATE_LIMIT_DELAY = timedelta(seconds=10)
MAX_RATE_LIMIT_DELAY = timedelta(minutes=10)


def wire_schema(schema: Any) -> Any:
    """The schema as sent to the endpoint: the same shape, minus keywords strict mode refuses."""
    if isinstance(schema, dict):
        return {k: wire_schema(v) for k, v in schema.items() if k not in _UNSUPPORTED_STRICT_KEYWORDS}
    if isinstance(schema, list):
        return [wire_schema(v) for v in schema]
    return schema


def retry_after(headers: Any) -> timedelta:
    """Retry-After (seconds or an HTTP date) or retry-after-ms, bounded; a default when absent."""
    raw_ms = headers.get("retry-after-ms")
    raw = headers.get("retry-after")
    delay: float | None = None
    try:
        if raw_ms is not None:
            delay = float(raw_ms) / 1000
        elif raw is not None:
            delay = float(raw)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(raw) if raw else None
        if parsed is not None:
            delay = parsed.timestamp() - time.time()
    if delay is None or delay < 0:
        return DEFAULT_RATE_LIMIT_DELAY
    return min(timedelta(seconds=delay), MAX_RATE_LIMIT_DELAY)


class OpenAICompatibleProvider:
    name: Literal["openai"] = "openai"
    rate_limited = True
    follows_instructions = True

    def __init__(self, *, base_url: str | None, api_key: str | None, model: str, timeout_s: float,
                 output_mode: str, max_output_tokens: int) -> None:
        self.model = model
        self.output_mode = output_mode
        self.max_output_tokens = max_output_tokens
        self._client = AsyncOpenAI(
            base_url=base_url,
            # Local servers (Ollama, vLLM) accept any key; the client insists on one.
            api_key=api_key or "not-needed",
            max_retries=0,
            timeout=timeout_s,
        )

    def _response_format(self, task: LlmTask) -> dict[str, Any] | None:
        if self.output_mode == "json_schema":
            return {
                "type": "json_schema",
                "json_schema": {"name": _WIRE_NAME.sub("_", task.name)[:64], "schema": wire_schema(task.schema),
                                "strict": True},
            }
        if self.output_mode == "json_object":
            return {"type": "json_object"}
        return None  # plain prompting: the schema is in the system prompt either way

    async def complete(self, task: LlmTask, request: LlmTaskRequest, messages: list[dict[str, Any]]) -> ProviderReply:
        extra: dict[str, Any] = {}
        if (response_format := self._response_format(task)) is not None:
            extra["response_format"] = response_format
        try:
            completion = await self._client.chat.completions.create(
                model=self.model, messages=messages, temperature=0, max_tokens=self.max_output_tokens, **extra
            )
        except openai.RateLimitError as exc:
            raise ApplicationError(
                "the LLM endpoint is rate limiting (429)", type=errors.LLM_RATE_LIMITED,
                next_retry_delay=retry_after(exc.response.headers),
            ) from None
        except openai.APIStatusError as exc:
            if exc.status_code in _REJECTED_STATUSES:
                raise ApplicationError(
                    f"the LLM endpoint rejected the request ({exc.status_code} {type(exc).__name__})",
                    type=errors.LLM_REQUEST_REJECTED, non_retryable=True,
                ) from None
            raise ApplicationError(
                f"the LLM endpoint failed ({exc.status_code})", type=errors.LLM_UNAVAILABLE
            ) from None
        except openai.APITimeoutError:
            raise ApplicationError("the LLM endpoint timed out", type=errors.LLM_UNAVAILABLE) from None
        except openai.APIConnectionError:
            raise ApplicationError("the LLM endpoint is unreachable", type=errors.LLM_UNAVAILABLE) from None
        except openai.APIResponseValidationError:
            raise ApplicationError("the LLM endpoint's answer is not a chat completion", type=errors.LLM_BAD_RESPONSE) from None
        try:
            message = completion.choices[0].message
            usage = completion.usage
            return ProviderReply(
                content=message.content or "",
                model_version=completion.model or self.model,
                input_tokens=usage.prompt_tokens if usage else 0,
                output_tokens=usage.completion_tokens if usage else 0,
            )
        except (AttributeError, IndexError, TypeError):
            raise ApplicationError("the LLM endpoint's answer is not a chat completion", type=errors.LLM_BAD_RESPONSE) from None

"""One LLM step, start to finish: screen, check the spend cap, budget, call, validate, repair once, record.

The service is process-wide (one provider client, one set of budgets per worker) and built from
Settings on first use; `configure()` replaces it, for tests and for a worker with its own settings.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from temporalio.exceptions import ApplicationError

from activities.llm import errors
from activities.llm.models import (
    LlmCallRecord,
    LlmTaskRequest,
    LlmTaskResult,
    ValidationOutcome,
)
from activities.llm.providers.base import Provider, ProviderReply
from activities.llm.providers.offline import OfflineProvider
from activities.llm.providers.openai_compatible import OpenAICompatibleProvider
from activities.llm.ratelimit import ModelBudget
from activities.llm.screening import screen
from activities.llm.spend import SpendLedger, spend_ledger
from activities.llm.tasks import InvalidTask, LlmTask, render, task_for
from policies import output as output_policy
from steward import runtime
from steward.logs import get_logger
from steward.rate_limits import RateLimits
from steward.settings import ModelPrice, Settings

log = get_logger(__name__)

# Rough token estimate for budgeting before the endpoint reports usage: ~4 characters a token.
CHARS_PER_TOKEN = 4
MAX_VALIDATION_ERRORS = 8
REPAIR_INSTRUCTION = (
    "Your previous answer was rejected for these reasons:\n{errors}\n"
    "Answer again with only one JSON object that matches the schema. Do not add any other text."
)


def build_provider(settings: Settings) -> Provider:
    if settings.llm_provider_in_use == "offline":
        return OfflineProvider(sanctioned_countries=settings.sanctioned_countries)
    return OpenAICompatibleProvider(
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key_value(),
        model=settings.llm_model,
        timeout_s=settings.llm_timeout_s,
        output_mode=settings.llm_output_mode,
        max_output_tokens=settings.llm_max_output_tokens,
    )


def utc_today() -> date:
    return datetime.now(UTC).date()


def cost_usd(price: ModelPrice | None, input_tokens: int, output_tokens: int) -> float:
    if price is None:
        return 0.0
    total = input_tokens * price.input_per_million_usd + output_tokens * price.output_per_million_usd
    return round(total / 1_000_000, 8)


def check_answer(task: LlmTask, content: str, policy: output_policy.OutputPolicy) -> tuple[dict[str, Any] | None, list[str]]:
    """Parse and validate one reply: JSON, then the task's schema, then the output policy."""
    try:
        answer = json.loads(content)
    except json.JSONDecodeError as exc:
        return None, [f"the answer is not JSON ({exc.msg} at position {exc.pos})"]
    if not isinstance(answer, dict):
        return None, ["the answer is not a JSON object"]
    problems = [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in sorted(task.validator.iter_errors(answer), key=lambda e: list(e.absolute_path))
    ][:MAX_VALIDATION_ERRORS]
    if problems:
        return None, problems
    violations = policy.violations(task.name, answer)
    return (None, violations) if violations else (answer, [])


class LlmService:
    def __init__(self, settings: Settings, provider: Provider | None = None, *, spend: SpendLedger | None = None,
                 today: Callable[[], date] = utc_today) -> None:
        self.settings = settings
        self.provider = provider or build_provider(settings)
        self.prices = settings.llm_prices
        # Budgets count here, or in the Redis every worker shares (STEWARD_REDIS_URL).
        self.limits = RateLimits.from_settings(settings)
        self._budgets: dict[str, ModelBudget] = {}
        self.policy = output_policy.load(settings.llm_output_policy)
        self.spend_cap = settings.llm_daily_spend_cap_usd
        self.spend = spend or spend_ledger(settings)
        self.today = today

    def budget(self, model: str) -> ModelBudget:
        if model not in self._budgets:
            self._budgets[model] = ModelBudget(model, self.settings.llm_requests_per_minute,
                                               self.settings.llm_tokens_per_minute, self.limits)
        return self._budgets[model]

    async def _call(self, task: LlmTask, request: LlmTaskRequest, messages: list[dict[str, Any]],
                    on_wait: Any) -> tuple[ProviderReply, float]:
        if not self.provider.rate_limited:
            started = time.perf_counter()
            reply = await self.provider.complete(task, request, messages)
            return reply, (time.perf_counter() - started) * 1000
        estimate = sum(len(m["content"]) for m in messages) // CHARS_PER_TOKEN + self.settings.llm_max_output_tokens
        budget = self.budget(self.provider.model)
        await budget.acquire(estimate, on_wait=on_wait)
        started = time.perf_counter()
        # A call that fails keeps its reservation: a window has no refunds (activities/llm/ratelimit.py).
        reply = await self.provider.complete(task, request, messages)
        await budget.settle(estimate, reply.input_tokens + reply.output_tokens)
        return reply, (time.perf_counter() - started) * 1000

    async def run(self, request: LlmTaskRequest, *, attempt: int = 1, on_wait: Any = None) -> LlmTaskResult:
        try:
            task = task_for(request)
        except InvalidTask as error:
            raise ApplicationError(str(error), type=errors.LLM_TASK_INVALID, non_retryable=True) from None
        if task is None:
            raise ApplicationError(f"no LLM task named {request.task!r}", type=errors.LLM_UNKNOWN_TASK,
                                   non_retryable=True)
        prompt = render(task, request.facts, request.untrusted)
        record = LlmCallRecord(
            step=request.step, task=task.name, provider=self.provider.name, model_requested=self.provider.model,
            model_version="(not called)", prompt_template=task.prompt_template, prompt_sha256=prompt.sha256,
            attempt=attempt, validation=ValidationOutcome(valid=False),
        )

        flags = screen(request.untrusted)
        if flags:
            # The model never sees text that tries to steer it; a person decides instead.
            record.injection_flags = flags
            record.validation.errors = ["not sent to the model: possible prompt injection"]
            sources = sorted({f.source for f in flags})
            log.warning("llm step held for review", step=request.step, task=task.name, flags=len(flags))
            return LlmTaskResult(record=record, needs_review=True,
                                 review_reasons=[f"possible prompt injection in {', '.join(sources)}"])

        if task.inline and not self.provider.follows_instructions:
            # The offline rules answer the shipped tasks only: inventing an answer to a definition's
            # own instructions would be dishonest, so a person decides.
            record.validation.errors = ["not sent: the offline provider answers shipped tasks only"]
            log.warning("llm step held for review", step=request.step, task=task.name, reason="no model")
            return LlmTaskResult(record=record, needs_review=True, review_reasons=[
                "no model is configured: the offline provider cannot follow a definition's own instructions"])

        day = self.today()
        over_cap = await self._spend_cap_reached(request.tenant, day)
        if over_cap:
            # Like screening: no model call, so nothing more is spent; a person decides instead.
            record.validation.errors = ["not sent to the model: the tenant's daily spend cap is reached"]
            log.warning("llm step held for review", step=request.step, task=task.name, reason="daily spend cap",
                        tenant=request.tenant)
            return LlmTaskResult(record=record, needs_review=True, review_reasons=[over_cap])

        messages = list(prompt.messages)
        reply, latency = await self._call(task, request, messages, on_wait)
        await self._account(record, reply, latency, request.tenant, day)
        answer, problems = check_answer(task, reply.content, self.policy)
        if problems:
            # One repair: the model sees exactly why its answer was refused.
            messages += [
                {"role": "assistant", "content": reply.content},
                {"role": "user", "content": REPAIR_INSTRUCTION.format(errors="\n".join(f"- {p}" for p in problems))},
            ]
            reply, latency = await self._call(task, request, messages, on_wait)
            await self._account(record, reply, latency, request.tenant, day)
            answer, second_problems = check_answer(task, reply.content, self.policy)
            record.validation = ValidationOutcome(valid=answer is not None, repaired=answer is not None,
                                                  errors=problems + second_problems)
            if answer is None:
                log.warning("llm answer invalid after repair", step=request.step, task=task.name)
                raise ApplicationError(
                    f"the model's answer for {task.name} was invalid twice", record.model_dump(mode="json"),
                    type=errors.LLM_OUTPUT_INVALID, non_retryable=True,
                )
        else:
            record.validation = ValidationOutcome(valid=True)

        assert answer is not None
        record.decision = task.decision_of(answer)
        confidence = answer.get(task.confidence_field)
        record.confidence = float(confidence) if isinstance(confidence, int | float) else None
        explanation = answer.get(task.explanation_field)
        record.explanation = explanation if isinstance(explanation, str) else None
        log.info("llm step finished", step=request.step, task=task.name, provider=record.provider,
                 model=record.model_version, calls=record.calls, input_tokens=record.input_tokens,
                 output_tokens=record.output_tokens, cost_usd=record.cost_usd, latency_ms=round(record.latency_ms, 1),
                 repaired=record.validation.repaired)
        return LlmTaskResult(answer=answer, record=record)

    async def _spend_cap_reached(self, tenant: str | None, day: date) -> str | None:
        """The review reason when the tenant's spend on `day` has reached the cap; None otherwise."""
        if self.spend_cap is None or not tenant:
            return None
        if await self.spend.spent(tenant, day) < self.spend_cap:
            return None
        return f"daily LLM spend cap of ${self.spend_cap:g} reached for tenant {tenant}"

    async def _account(self, record: LlmCallRecord, reply: ProviderReply, latency_ms: float,
                       tenant: str | None, day: date) -> None:
        cost = cost_usd(self.prices.get(self.provider.model), reply.input_tokens, reply.output_tokens)
        record.calls += 1
        record.model_version = reply.model_version
        record.input_tokens += reply.input_tokens
        record.output_tokens += reply.output_tokens
        record.cost_usd = round(record.cost_usd + cost, 8)
        record.latency_ms += latency_ms
        if self.spend_cap is None or not tenant or not cost:
            return
        try:
            await self.spend.add(tenant, day, cost)
        except Exception:
            # The call is made and paid for: failing the step now would only make a retry pay again.
            log.exception("llm spend not recorded", step=record.step, tenant=tenant, cost_usd=cost)


_service: LlmService | None = None


def get_service() -> LlmService:
    global _service
    if _service is None:
        _service = LlmService(runtime.settings())
    return _service


def configure(settings: Settings | None, provider: Provider | None = None) -> None:
    """Replace the process's service (None: rebuild from steward.runtime's settings on next use)."""
    global _service
    _service = None if settings is None else LlmService(settings, provider)

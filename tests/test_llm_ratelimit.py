"""Per-model budgets over the limiter's moving windows, counted in memory (tests/test_rate_limits_redis.py: in Redis).

Most tests end a call at the first wait it asks for, so nothing waits out a minute; two run a
one-second window in real time to prove the wait ends when the window has room again.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from activities.llm.ratelimit import ModelBudget
from steward.rate_limits import RateLimits

# The window's length, less the milliseconds the test took since the first call was counted.
A_MINUTE = pytest.approx(60, abs=1)


class Waited(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds


async def stop_at_the_wait(seconds: float) -> None:
    """The budget's sleep: end the call at the wait it asks for."""
    raise Waited(seconds)


def minute_budget(requests: int, tokens: int) -> ModelBudget:
    return ModelBudget(f"model-{uuid.uuid4().hex}", requests, tokens, RateLimits(), sleep=stop_at_the_wait)


async def first_wait(budget: ModelBudget, estimated_tokens: int) -> float:
    with pytest.raises(Waited) as waited:
        await budget.acquire(estimated_tokens)
    return waited.value.seconds


async def test_requests_beyond_the_minute_budget_wait_for_the_window():
    budget = minute_budget(requests=2, tokens=10_000)
    assert await budget.acquire(10) == 0
    assert await budget.acquire(10) == 0
    assert await first_wait(budget, 10) == A_MINUTE  # until the first call leaves the window


async def test_tokens_beyond_the_minute_budget_wait_for_the_window():
    budget = minute_budget(requests=100, tokens=1000)
    assert await budget.acquire(600) == 0
    assert await budget.acquire(400) == 0
    assert await first_wait(budget, 1) == A_MINUTE


async def test_unused_estimate_stays_counted_until_it_leaves_the_window():
    # A moving window has no refunds: the budget errs below the endpoint's limit, never past it.
    budget = minute_budget(requests=100, tokens=1000)
    await budget.acquire(1000)
    await budget.settle(estimated_tokens=1000, actual_tokens=100)
    assert await first_wait(budget, 900) == A_MINUTE


async def test_a_request_larger_than_the_budget_takes_an_empty_window_not_forever():
    budget = minute_budget(requests=10, tokens=100)
    assert await budget.acquire(5000) == 0  # counted as the whole budget
    assert await first_wait(budget, 1) == A_MINUTE


async def test_waiting_is_reported_so_the_activity_can_heartbeat():
    budget = minute_budget(requests=1, tokens=1000)
    await budget.acquire(1)
    reported: list[float] = []
    with pytest.raises(Waited):
        await budget.acquire(1, on_wait=reported.append)
    assert reported == [A_MINUTE]


async def test_the_call_goes_out_once_the_oldest_call_leaves_the_window():
    budget = ModelBudget(f"model-{uuid.uuid4().hex}", 1, 1000, RateLimits(), window_s=1)
    assert await budget.acquire(1) == 0
    waited = await budget.acquire(1)
    # The waits are the limiter's reset times, not wall time: about the one-second window, never 0.
    assert 0.5 < waited <= 1.2


async def test_tokens_used_beyond_the_estimate_are_borrowed_from_the_next_window():
    slept: list[float] = []

    async def sleep_once(seconds: float) -> None:
        if slept:
            raise Waited(seconds)
        slept.append(seconds)
        await asyncio.sleep(seconds)

    budget = ModelBudget(f"model-{uuid.uuid4().hex}", 100, 600, RateLimits(), window_s=1, sleep=sleep_once)
    await budget.acquire(100)
    # 1300 used: 500 more fit this window, the other 700 are owed to the next one.
    await budget.settle(estimated_tokens=100, actual_tokens=1300)
    assert await budget.acquire(100) > 0  # waits for the next window, and takes all of it: 100 + the debt, capped
    with pytest.raises(Waited):
        await budget.acquire(100)  # without the debt, this would fit beside the last call's 100

"""Per-model budgets, driven by a manual clock: no test sleeps."""

from __future__ import annotations

from activities.llm.ratelimit import ModelBudget


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_requests_beyond_the_minute_budget_wait_for_the_refill():
    clock = ManualClock()
    budget = ModelBudget(requests_per_minute=2, tokens_per_minute=10_000, clock=clock, sleep=clock.sleep)
    assert await budget.acquire(10) == 0
    assert await budget.acquire(10) == 0
    waited = await budget.acquire(10)
    assert waited == 30.0  # one request refills every 60/2 s


async def test_tokens_used_beyond_the_estimate_are_borrowed_from_the_next_minute():
    clock = ManualClock()
    budget = ModelBudget(requests_per_minute=100, tokens_per_minute=600, clock=clock, sleep=clock.sleep)
    await budget.acquire(100)
    budget.settle(estimated_tokens=100, actual_tokens=700)  # 500 left, 600 more taken: 100 owed
    waited = await budget.acquire(100)
    assert waited == 20.0  # 100 owed + 100 needed, at 10 tokens/s


async def test_unused_estimate_is_given_back():
    clock = ManualClock()
    budget = ModelBudget(requests_per_minute=100, tokens_per_minute=1000, clock=clock, sleep=clock.sleep)
    await budget.acquire(1000)
    budget.settle(estimated_tokens=1000, actual_tokens=100)
    assert await budget.acquire(900) == 0


async def test_a_request_larger_than_the_budget_waits_for_a_full_bucket_not_forever():
    clock = ManualClock()
    budget = ModelBudget(requests_per_minute=10, tokens_per_minute=100, clock=clock, sleep=clock.sleep)
    await budget.acquire(50)
    assert await budget.acquire(5000) == 30.0


async def test_waiting_is_reported_so_the_activity_can_heartbeat():
    clock = ManualClock()
    budget = ModelBudget(requests_per_minute=1, tokens_per_minute=1000, clock=clock, sleep=clock.sleep)
    await budget.acquire(1)
    reported: list[float] = []
    await budget.acquire(1, on_wait=reported.append)
    assert reported == [60.0]

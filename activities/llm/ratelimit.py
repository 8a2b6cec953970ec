"""Per-model budgets of requests and tokens per minute, shared by every activity slot of a worker.

Token buckets refill continuously. A call takes one request and an estimate of its tokens before
it goes out, and settles the difference once the endpoint reports real usage, so a long answer
borrows from the next minute instead of being free. This caps one worker process; across
workers, cap the task queue (docs/llm.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

WINDOW_S = 60.0


class TokenBucket:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.available = float(per_minute)
        self.rate = per_minute / WINDOW_S
        self._clock = clock
        self._updated = clock()

    def _refill(self) -> None:
        now = self._clock()
        self.available = min(self.capacity, self.available + (now - self._updated) * self.rate)
        self._updated = now

    def wait_s(self, amount: float) -> float:
        """Seconds until `amount` is available (an amount above capacity waits for a full bucket)."""
        self._refill()
        missing = min(amount, self.capacity) - self.available
        return max(0.0, missing / self.rate)

    def take(self, amount: float) -> None:
        self._refill()
        self.available -= amount  # may go negative: debt repaid by later refills

    def give_back(self, amount: float) -> None:
        self._refill()
        self.available = min(self.capacity, self.available + amount)


class ModelBudget:
    def __init__(self, requests_per_minute: int, tokens_per_minute: int,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.requests = TokenBucket(requests_per_minute, clock)
        self.tokens = TokenBucket(tokens_per_minute, clock)
        self._sleep = sleep
        # One waiter at a time: first come, first served, and no thundering herd on refill.
        self._lock = asyncio.Lock()

    async def acquire(self, estimated_tokens: int, on_wait: Callable[[float], None] | None = None) -> float:
        """Wait until one request and `estimated_tokens` fit the budget; return seconds waited."""
        waited = 0.0
        async with self._lock:
            while (delay := max(self.requests.wait_s(1), self.tokens.wait_s(estimated_tokens))) > 0:
                if on_wait is not None:
                    on_wait(delay)
                await self._sleep(delay)
                waited += delay
            self.requests.take(1)
            self.tokens.take(estimated_tokens)
        return waited

    def settle(self, estimated_tokens: int, actual_tokens: int) -> None:
        if actual_tokens > estimated_tokens:
            self.tokens.take(actual_tokens - estimated_tokens)
        else:
            self.tokens.give_back(estimated_tokens - actual_tokens)

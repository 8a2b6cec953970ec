"""Per-model budgets of requests and tokens per minute: for every activity slot of a worker, and for
every worker when they share a Redis (STEWARD_REDIS_URL).

A budget is two moving windows of steward/rate_limits.py, keyed by model. A call counts one
request and its estimated tokens before it goes out. Tokens the endpoint reports beyond the
estimate are counted when the call settles, and what does not fit the window then is charged to
this budget's next call, so a long answer borrows from the next minute instead of being free.

An over-estimate is not given back: a moving window has no refunds, so the unused tokens stay
counted until the call leaves the window, within a minute. The budget errs below the endpoint's
limit, never past it; the estimate is the prompt plus STEWARD_LLM_MAX_OUTPUT_TOKENS, so a
max-output close to real answers keeps it close.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from limits import RateLimitItemPerSecond

from steward.rate_limits import RateLimits

WINDOW_S = 60
# The shortest wait: a reset time just past (or from a host whose clock is a little ahead) must
# not make the loop ask Redis again at once, over and over.
MIN_WAIT_S = 0.05


class ModelBudget:
    """`requests` and `tokens` per `window_s` seconds (a minute, as the settings say) for `model`."""

    def __init__(self, model: str, requests: int, tokens: int, limits: RateLimits, *, window_s: int = WINDOW_S,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.model = model
        self.requests = RateLimitItemPerSecond(requests, window_s, namespace="llm-requests")
        self.tokens = RateLimitItemPerSecond(tokens, window_s, namespace="llm-tokens")
        self._limits = limits
        self._sleep = sleep
        # Tokens earlier calls used beyond their estimate that did not fit the window when they settled.
        self._owed = 0
        # One waiter at a time in this process: first come, first served, and no thundering herd.
        self._lock = asyncio.Lock()

    async def acquire(self, estimated_tokens: int, on_wait: Callable[[float], None] | None = None) -> float:
        """Wait until one request and `estimated_tokens` (plus what is owed) fit; return seconds waited."""
        waited = 0.0
        async with self._lock:
            owed = self._owed
            # A call larger than the whole budget waits for an empty window, not forever.
            tokens = min(estimated_tokens + owed, self.tokens.amount)
            while (delay := await self._take(tokens)) > 0:
                if on_wait is not None:
                    on_wait(delay)
                await self._sleep(delay)
                waited += delay
            self._owed -= owed
        return waited

    async def settle(self, estimated_tokens: int, actual_tokens: int) -> None:
        """Count the tokens used beyond the estimate; an over-estimate stays counted (module docstring)."""
        extra = actual_tokens - estimated_tokens
        if extra <= 0:
            return
        fits = min(extra, (await self._limits.window(self.tokens, self.model)).remaining)
        if fits and await self._limits.hit(self.tokens, self.model, cost=fits):
            extra -= fits
        self._owed += extra

    async def _take(self, tokens: int) -> float:
        """Count one request and `tokens` and return 0; or, when they do not fit, the seconds until
        the window that is short has room again (its oldest counted call leaves it)."""
        needs = ((self.requests, 1), (self.tokens, tokens))
        windows = [(await self._limits.window(item, self.model), need) for item, need in needs]
        short = [window for window, need in windows if window.remaining < need]
        if short:
            return max(MIN_WAIT_S, max(window.reset_time for window in short) - time.time())
        # Another worker may take the room between the look and the count; then the loop looks again.
        # The request counted for a call whose tokens lost that race makes the budget stricter, never looser.
        if await self._limits.hit(self.requests, self.model) and await self._limits.hit(
                self.tokens, self.model, cost=tokens):
            return 0.0
        return MIN_WAIT_S

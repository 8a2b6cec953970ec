"""Rate limits the API and the workers count with: in this process's memory, or in a Redis all processes share.

With STEWARD_REDIS_URL unset each process counts on its own, so a limit of N is N per process. Set,
every API process and worker that points at the same Redis draws on one budget per key. The
counting is the `limits` package's; this module chooses its strategy and storage, and decides what
happens while Redis cannot be reached.

The moving window strategy, not the sliding window counter. Both are atomic in Redis: a hit is one
Lua script that checks and counts together, so two processes can never both take the last unit,
and a refused hit counts nothing. But the moving window is exact, at most N units in any window,
and its reset time is when the oldest counted hit leaves the window: the moment room comes back,
which is what Retry-After and the LLM budget's wait are made of. The sliding window counter
approximates with the previous window's weighted count, and its reset time is when that count
drops by one unit: possibly before a request fits (a client told to come back then is refused
again), and for a budget of 200 000 tokens a minute, every 0.3 ms.

Its price: one entry per counted unit, so up to N timestamps per key (600 per principal by
default; up to STEWARD_LLM_TOKENS_PER_MINUTE per model, 200 000 by default: a few MB in Redis).
Entries carry the counting host's clock, so hosts sharing a Redis need synchronized clocks (NTP):
a skew of s seconds moves a window's end by s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio
from limits import RateLimitItem
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.util import WindowStats
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from steward.logs import get_logger
from steward.settings import Settings

log = get_logger(__name__)

T = TypeVar("T")

# A rate-limit check slower than this costs every request more than the limit protects; a healthy
# Redis answers in about a millisecond.
REDIS_TIMEOUT_S = 0.5
# After a failure, count in this process for this long before asking Redis again, so a Redis that
# hangs slows one request in this interval instead of every request.
REDIS_RETRY_S = 5.0
# An outage is a warning a minute, not one per request.
WARNING_INTERVAL_S = 60.0
REDIS_KEY_PREFIX = "steward-limits"


class RateLimits:
    """Moving-window limits over Redis when `redis_url` is given, else over this process's memory.

    A Redis that cannot be reached must not take the API down, nor lift every limit: each call it
    fails is counted in this process's memory instead (per process, as without Redis), and a
    warning is logged once a minute while that lasts. Counts move back to Redis when it answers
    again; what was counted locally meanwhile is not carried over.
    """

    def __init__(self, redis_url: str | None = None, *, retry_s: float = REDIS_RETRY_S) -> None:
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._shared: MovingWindowRateLimiter | None = None
        self._pool: redis.asyncio.ConnectionPool | None = None
        if redis_url is not None:
            # Our own pool, so the client's timeouts are ours and it can be closed. No retries in the
            # client: a failed check falls back to memory at once rather than after its backoff.
            self._pool = redis.asyncio.ConnectionPool.from_url(
                redis_url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S,
                retry=Retry(NoBackoff(), 0),
            )
            # The URI only selects the storage; the pool carries the address and the password.
            self._shared = MovingWindowRateLimiter(RedisStorage(
                "async+redis://", implementation="redispy", wrap_exceptions=True, key_prefix=REDIS_KEY_PREFIX,
                connection_pool=self._pool,
            ))
        self._retry_s = retry_s
        self._shared_retry_at = 0.0
        self._warned_at = -math.inf

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        if settings.redis_url is None:
            return cls()
        try:
            return cls(settings.redis_url.get_secret_value())
        except ValueError as error:
            # redis-py's message names the schemes it takes, never the URL (which may hold the password).
            raise ValueError(f"STEWARD_REDIS_URL: {error}") from None

    async def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        """Count `cost` units of `item` for `identifiers` if they fit its window; False (nothing counted) if not."""
        return await self._on_storage(lambda limiter: limiter.hit(item, *identifiers, cost=cost))

    async def window(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        """Units left in the window now, and when (epoch seconds) its oldest counted hit leaves it."""
        return await self._on_storage(lambda limiter: limiter.get_window_stats(item, *identifiers))

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()

    async def _on_storage(self, call: Callable[[MovingWindowRateLimiter], Awaitable[T]]) -> T:
        if self._shared is not None and time.monotonic() >= self._shared_retry_at:
            try:
                return await call(self._shared)
            except StorageError as error:
                self._redis_failed(error.storage_error)
        return await call(self._local)

    def _redis_failed(self, error: Exception) -> None:
        now = time.monotonic()
        self._shared_retry_at = now + self._retry_s
        if now - self._warned_at >= WARNING_INTERVAL_S:
            self._warned_at = now
            # The error names host and port at most; the URL, which may carry a password, is never logged.
            log.warning("redis unreachable: rate limits count per process until it answers",
                        error=f"{type(error).__name__}: {error}")


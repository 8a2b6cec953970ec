"""Abuse limits (OWASP API4): a request rate per principal, and a cap on request bodies.

Both hold per API process. With several API replicas each one counts on its own, so either put
a shared limiter (the gateway or load balancer) in front, or give each replica its share of the
budget. docs/security.md#abuse-limits describes them for operators.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from fastapi import Depends, Request, params
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import CurrentPrincipal
from api.errors import ApiError, error_response
from steward.identity import Principal

WINDOW_S = 60.0
# Far more principals than one process sees busy in a minute; beyond it the least recently seen
# are forgotten, so even a flood of valid identities cannot grow the table without bound.
MAX_TRACKED_PRINCIPALS = 100_000


class RateLimiter:
    """A token bucket per key: bursts of up to `per_minute` requests, refilled at per_minute/60 a second.

    A bucket left alone for a whole window is full again, which is the same as not being tracked
    at all, so such buckets are dropped (least recently seen first): memory follows the principals
    active in the last minute, and is capped at `max_keys` even then.
    """

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = MAX_TRACKED_PRINCIPALS) -> None:
        self.per_minute = per_minute
        self._rate = per_minute / WINDOW_S
        self._clock = clock
        self._max_keys = max_keys
        # key → (tokens left, when last seen), least recently seen first.
        self._buckets: OrderedDict[object, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, key: object) -> float:
        """Take one request for `key`: 0.0 when allowed, else the seconds until one would be."""
        now = self._clock()
        self._forget_idle(now)
        tokens, seen = self._buckets.pop(key, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - seen) * self._rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self._rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._max_keys:
            # Forgetting a busy principal only hands it a fresh bucket: lenient, never unfair.
            self._buckets.popitem(last=False)
        return wait

    def _forget_idle(self, now: float) -> None:
        while self._buckets:
            key, (_, seen) = next(iter(self._buckets.items()))
            if now - seen < WINDOW_S:
                return
            del self._buckets[key]


class PrincipalRateLimit:
    """The dependency every /v1 router carries: after authentication, count the caller's request.

    The key is the verified (tenant, sub), never the raw token: re-issuing tokens does not reset
    anyone's budget, and only identities signed by our issuer can create an entry. Unauthenticated
    requests are refused with 401 by get_principal before they are counted.
    """

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limiter = RateLimiter(per_minute, clock=clock)

    async def __call__(self, principal: CurrentPrincipal) -> None:
        self.check(principal)

    def check(self, principal: Principal) -> None:
        """Count one request of `principal`; 429 when its budget is spent. For routes that
        establish the caller themselves (the /codec session) rather than through the dependency."""
        _refuse_when_spent(self.limiter, (principal.tenant, principal.sub))


class AddressRateLimit:
    """The same budget for routes whose caller has no identity of ours (links people follow from a
    message: the token in the URL is the credential), counted per client address."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limiter = RateLimiter(per_minute, clock=clock)

    async def __call__(self, request: Request) -> None:
        _refuse_when_spent(self.limiter, ("address", request.client.host if request.client else "?"))


def _refuse_when_spent(limiter: RateLimiter, key: object) -> None:
    wait = limiter.acquire(key)
    if wait:
        retry_after = max(1, math.ceil(wait))
        raise ApiError(
            429, "rate_limited",
            f"more than {limiter.per_minute} requests a minute; retry after {retry_after} s",
            {"limit_per_minute": limiter.per_minute, "retry_after_s": retry_after},
            headers={"Retry-After": str(retry_after)},
        )


def v1_rate_limit(limit: PrincipalRateLimit) -> list[params.Depends]:
    """Dependencies for every /v1 router; one limiter, so the routers share one budget."""
    return [Depends(limit)]


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a body passes the limit.

    An HTTPException because FastAPI re-raises those from body reading (anything else becomes a
    400), so the app's own handler answers it in the usual error shape.
    """

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, too_large_message(max_bytes))


def too_large_message(max_bytes: int) -> str:
    return f"the request body is larger than {max_bytes} bytes (STEWARD_MAX_BODY_BYTES)"


class BodySizeLimit:
    """Refuse request bodies over `max_bytes` with 413, without reading more than the limit.

    A declared Content-Length over the limit is refused before anything is read. A body without
    one (chunked) is counted as it streams in, and reading stops at the chunk that passes the
    limit, so at most the limit plus one server read (64 KiB in uvicorn) is ever held.

    The connection stays open: uvicorn reads the rest of a refused body and drops it. Closing
    instead would make clients that are still sending see a reset rather than the 413.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return

        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            # Only reached when something outside FastAPI's handlers read the body.
            if response_started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, "payload_too_large", too_large_message(self.max_bytes))
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP server refuses a malformed length before we see it
    return None

"""Abuse limits (OWASP API4): a request rate per principal (or per address), and a cap on request bodies.

The rate is counted by steward/rate_limits.py: per API process, or across all of them when they
share a Redis (STEWARD_REDIS_URL). docs/security.md#abuse-limits describes them for operators.
"""

from __future__ import annotations

import hashlib
import math
import time

from fastapi import Depends, Request, params
from limits import RateLimitItem, RateLimitItemPerMinute
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import CurrentPrincipal
from api.errors import ApiError, error_response
from steward.identity import Principal
from steward.rate_limits import RateLimits


class PrincipalRateLimit:
    """The dependency every /v1 router carries: after authentication, count the caller's request.

    The key is the verified (tenant, sub), never the raw token: re-issuing tokens does not reset
    anyone's budget, and only identities signed by our issuer can create an entry. Unauthenticated
    requests are refused with 401 by get_principal before they are counted.
    """

    def __init__(self, limits: RateLimits, per_minute: int) -> None:
        self.limits = limits
        self.item = RateLimitItemPerMinute(per_minute, namespace="api-principal")

    async def __call__(self, principal: CurrentPrincipal) -> None:
        await self.check(principal)

    async def check(self, principal: Principal) -> None:
        """Count one request of `principal`; 429 when its budget is spent. For routes that
        establish the caller themselves (the /codec session) rather than through the dependency."""
        await _refuse_when_spent(self.limits, self.item, principal.tenant, principal.sub)


class AddressRateLimit:
    """The same budget for routes whose caller has no identity of ours (links people follow from a
    message: the token in the URL is the credential), counted per client address."""

    def __init__(self, limits: RateLimits, per_minute: int) -> None:
        self.limits = limits
        self.item = RateLimitItemPerMinute(per_minute, namespace="api-address")

    async def __call__(self, request: Request) -> None:
        await _refuse_when_spent(self.limits, self.item, request.client.host if request.client else "?")


def limit_key(*parts: str) -> str:
    """The storage key for a caller: a digest of its parts, since a sub may be an e-mail address and a
    client address is personal data too; neither belongs in Redis's key space."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def retry_after_s(reset_time: float, now: float) -> int:
    """Whole seconds until `reset_time`, at least 1: clients read Retry-After as an integer."""
    return max(1, math.ceil(reset_time - now))


async def _refuse_when_spent(limits: RateLimits, item: RateLimitItem, *caller: str) -> None:
    key = limit_key(*caller)
    if await limits.hit(item, key):
        return  # a refused request is not counted, so retrying early costs the caller nothing
    retry_after = retry_after_s((await limits.window(item, key)).reset_time, time.time())
    raise ApiError(
        429, "rate_limited",
        f"more than {item.amount} requests a minute; retry after {retry_after} s",
        {"limit_per_minute": item.amount, "retry_after_s": retry_after},
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

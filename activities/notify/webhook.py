"""The `deliver-webhook` activity: one signed POST per attempt, per Standard Webhooks.

Each request carries `webhook-id` (the message's idempotency key, the same on every retry, so a
receiver de-duplicates), `webhook-timestamp` (this attempt's time, so a receiver can refuse
replays) and `webhook-signature` (`v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`, keyed
with the base64-decoded whsec_ secret). See https://www.standardwebhooks.com.

Temporal's retry policy owns retries: one attempt is one HTTP request, and every failure is a
typed ApplicationError the workflow side matches (workflows/notifications.py). A receiver's
answer body is never read, let alone passed on.

Before anything is sent the target is checked (SSRF): http(s) only, https unless private
networks are allowed, and no loopback, private, link-local, multicast, reserved or unspecified
address among any the host resolves to. Logs and results name the target's host only: a callback
URL may carry a token in its path or query.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import json
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, Field
from standardwebhooks import Webhook
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.llm.providers.openai_compatible import retry_after
from activities.notify.delivery import delivery_failure, delivery_log_context
from steward import runtime
from steward.logs import get_logger

log = get_logger(__name__)

# ApplicationError types: stable names workflows and retry policies match.
WEBHOOK_RATE_LIMITED = "WebhookRateLimited"  # retryable, after the receiver's Retry-After
WEBHOOK_UNAVAILABLE = "WebhookUnavailable"  # retryable: 408, 5xx, timeout, unreachable, DNS failure
WEBHOOK_REJECTED = "WebhookRejected"  # non-retryable: other 4xx, or a redirect
WEBHOOK_TARGET_FORBIDDEN = "WebhookTargetForbidden"  # non-retryable: the SSRF guard refused the URL
WEBHOOK_MISCONFIGURED = "WebhookMisconfigured"  # non-retryable: the signing secret is not whsec_ base64
NON_RETRYABLE = (WEBHOOK_REJECTED, WEBHOOK_TARGET_FORBIDDEN, WEBHOOK_MISCONFIGURED)

SECRET_PREFIX = "whsec_"
USER_AGENT = "Steward-Webhooks/1"
# Receivers are expected to acknowledge at once and do their work later (Standard Webhooks asks
# for a quick 2xx). 10 s still covers a cold start; a receiver slower than that is better retried
# with backoff than waited on while it holds a worker slot. Connecting is quick or not at all.
HTTP_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# Resolving has its own budget, so a hung resolver ends the attempt as retryable, not as
# Temporal's start-to-close timeout.
RESOLVE_TIMEOUT_S = 5.0


class WebhookTarget(BaseModel):
    """Where a notification goes. "platform" is STEWARD_NOTIFY_WEBHOOK_URL, which only the
    activity reads (workflows never read settings); "callback" is the run's own URL."""

    kind: Literal["callback", "platform"]
    url: str | None = None


class WebhookDeliveryRequest(BaseModel):
    target: WebhookTarget
    message_id: str = Field(description="webhook-id: identical on every retry, so receivers de-duplicate.")
    event_type: str
    data: dict[str, Any] = Field(default_factory=dict)
    # When the event happened (the workflow's clock), so every retry sends the same body;
    # when unset, the attempt's time.
    occurred_at: datetime | None = None


class WebhookDeliveryResult(BaseModel):
    delivered: bool
    skipped: bool = False
    status_code: int | None = None
    attempt: int
    target_host: str | None = None


def target_host(url: str | None) -> str | None:
    """The host a URL names, and nothing else of it: safe for logs, results and memos."""
    if not url:
        return None
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def signing_key(secret: str) -> bytes:
    """The HMAC key of a whsec_ secret: the base64 after the prefix, decoded."""
    raw = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise ValueError("a webhook secret is whsec_ followed by non-empty base64")
    return key


def sign(secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header for one message: `v1,<base64 HMAC-SHA256>` per secret, space-
    separated (Standard Webhooks' way of signing with an old and a new secret during a rotation),
    by the specification's reference library. Raises ValueError for a secret that is not whsec_."""
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    signatures = []
    for secret in secrets:
        signing_key(secret)  # refuse a malformed secret here: the library would sign with garbage
        signatures.append(Webhook(secret).sign(msg_id, moment, body.decode()))
    return " ".join(signatures)


def envelope(event_type: str, occurred: datetime, data: Any) -> bytes:
    """A Standard Webhooks body, `{type, timestamp, data}`, as canonical JSON (sorted keys, no
    spaces): the bytes the signature covers."""
    stamp = occurred.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps({"type": event_type, "timestamp": stamp, "data": data}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def payload(request: WebhookDeliveryRequest, now: datetime) -> bytes:
    return envelope(request.event_type, request.occurred_at or now, request.data)


def _failure(message: str, error_type: str, host: str | None, *, non_retryable: bool = False,
             next_retry_delay: timedelta | None = None) -> ApplicationError:
    return delivery_failure(message, error_type, non_retryable=non_retryable, next_retry_delay=next_retry_delay,
                            target_host=host)


def _forbidden_kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why no webhook may go to `ip`, or None for an ordinary public address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1 on the wire
    checks = (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),  # 169.254.169.254: cloud metadata services
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        # Shared address space (100.64.0.0/10) and the like: not private, not public either.
        ("non-public", not ip.is_global),
    )
    return next((kind for kind, matches in checks if matches), None)


async def _resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S)
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    return list(dict.fromkeys(addresses))


async def checked_destination(url: str, host: str | None, allow_private: bool) -> tuple[list[httpx.URL], str, str]:
    """The URLs to connect to (the target's, with its host replaced by each checked address, in
    the resolver's order), the Host header and the TLS server name that keep the request
    addressed to the original host. Raises when the target is refused.

    DNS rebinding: checking a name and then letting the HTTP client resolve it again leaves a
    window in which the name can start pointing inside. So the request goes to the very address
    that was checked; the original name travels in the Host header and, for https, as the TLS
    server name (httpcore's `sni_hostname` extension), which is also the name the certificate is
    verified against. One resolution, one check, one connection.
    """

    def forbidden(message: str) -> ApplicationError:
        return _failure(message, WEBHOOK_TARGET_FORBIDDEN, host, non_retryable=True)

    try:
        parsed = httpx.URL(url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except (httpx.InvalidURL, ValueError):
        raise forbidden("the webhook URL is not a valid URL") from None
    if parsed.scheme not in ("http", "https"):
        raise forbidden("webhook URLs must be http or https")
    if not parsed.raw_host:
        raise forbidden("the webhook URL has no host")
    if parsed.scheme != "https" and not allow_private:
        raise forbidden("webhook URLs must use https")
    name = parsed.raw_host.decode("ascii")
    try:
        addresses = await _resolve(name, port)
    except (OSError, TimeoutError):
        raise _failure("the webhook host could not be resolved", WEBHOOK_UNAVAILABLE, host) from None
    if not addresses:
        raise _failure("the webhook host could not be resolved", WEBHOOK_UNAVAILABLE, host)
    if not allow_private:
        # Every address, not just the first: a name with one public and one internal address
        # would otherwise reach inside whenever the client picked the second.
        for ip in addresses:
            if (kind := _forbidden_kind(ip)) is not None:
                raise forbidden(f"the webhook host resolves to a {kind} address")
    pinned = [parsed.copy_with(host=str(address)) for address in dict.fromkeys(addresses)]
    return pinned, parsed.netloc.decode("ascii"), name


def _outcome_error(status: int, headers: httpx.Headers, host: str | None) -> ApplicationError | None:
    if 200 <= status < 300:
        return None
    if status == 429:
        return _failure("the webhook receiver is rate limiting (429)", WEBHOOK_RATE_LIMITED, host,
                        next_retry_delay=retry_after(headers))
    if status == 408 or status >= 500:
        return _failure(f"the webhook receiver failed ({status})", WEBHOOK_UNAVAILABLE, host)
    if 300 <= status < 400:
        # Not followed: the redirect's target was never checked by the SSRF guard (a public
        # receiver could bounce us to 169.254.169.254), and a receiver that moved should be
        # given its new URL rather than be found by chance on every delivery.
        return _failure(f"the webhook receiver redirected ({status}); redirects are not followed",
                        WEBHOOK_REJECTED, host, non_retryable=True)
    if 400 <= status < 500:
        return _failure(f"the webhook receiver rejected the request ({status})", WEBHOOK_REJECTED, host,
                        non_retryable=True)
    return _failure(f"the webhook receiver answered {status}", WEBHOOK_UNAVAILABLE, host)


def signed_headers(message_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature,
            "content-type": "application/json", "user-agent": USER_AGENT}


@dataclass(frozen=True)
class Answer:
    status_code: int
    headers: httpx.Headers
    body: bytes = b""  # read only when asked for, up to the limit asked


async def send_checked(method: str, url: str, *, content: bytes | None, headers: dict[str, str], allow_private: bool,
                       read_limit: int = 0, unavailable: str = WEBHOOK_UNAVAILABLE) -> Answer:
    """One request through the SSRF guard (`checked_destination`): to an address checked, never
    redirected, never through a proxy. The addresses are tried in turn while they refuse the
    connection (a host with an IPv6 address this network cannot route, a load balancer with one
    node down); once one accepts it, its answer or failure stands, since a request that may have
    arrived is never sent twice. The answer's body is read only up to `read_limit` bytes (0: not
    at all; an answer past the limit reads as empty). Raises the guard's refusal, or
    `unavailable` when nothing answered."""
    host = target_host(url)
    try:
        destinations, host_header, server_name = await checked_destination(url, host, allow_private)
    except ApplicationError as err:
        log.warning("target refused", target_host=host, error_type=err.type, reason=err.message)
        raise
    extensions = {"sni_hostname": server_name} if destinations[0].scheme == "https" else {}
    # trust_env=False: an HTTP(S)_PROXY would resolve the name again on its side, out of the
    # guard's sight. follow_redirects=False: see _outcome_error.
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False, trust_env=False) as client:
        for n, destination in enumerate(destinations, start=1):
            try:
                async with client.stream(method, destination, content=content,
                                         headers={**headers, "host": host_header}, extensions=extensions) as response:
                    body = b""
                    if read_limit:
                        async for chunk in response.aiter_bytes():
                            body += chunk
                            if len(body) > read_limit:
                                body = b""
                                break
                    return Answer(response.status_code, response.headers, body)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                # Nothing was sent: the next address may take it.
                if n < len(destinations):
                    log.info("address refused the connection; trying the next", target_host=host, tried=n,
                             addresses=len(destinations))
                    continue
                error = _failure(f"the receiver at {host} is unreachable", unavailable, host)
            except httpx.TimeoutException:
                error = _failure(f"the receiver at {host} timed out", unavailable, host)
            except httpx.TransportError:
                error = _failure(f"the receiver at {host} is unreachable", unavailable, host)
            break
    log.warning("request not answered", target_host=host, error_type=error.type, reason=error.message)
    raise error


@activity.defn(name="deliver-webhook")
async def deliver_webhook(request: WebhookDeliveryRequest) -> WebhookDeliveryResult:
    info = activity.info()
    settings = runtime.settings()
    target = request.target
    url = settings.notify_webhook_url if target.kind == "platform" else target.url
    host = target_host(url)
    with delivery_log_context(target_kind=target.kind, target_host=host):
        if not url:
            if target.kind == "platform":
                log.info("webhook skipped: no platform webhook configured")
                return WebhookDeliveryResult(delivered=False, skipped=True, attempt=info.attempt)
            raise _failure("the callback target has no URL", WEBHOOK_TARGET_FORBIDDEN, None, non_retryable=True)
        timestamp = int(time.time())
        body = payload(request, datetime.fromtimestamp(timestamp, timezone.utc))
        try:
            signature = sign([settings.webhook_signing_secret()], request.message_id, timestamp, body)
        except ValueError:
            raise _failure("the webhook signing secret is not a whsec_ secret", WEBHOOK_MISCONFIGURED, host,
                           non_retryable=True) from None
        answer = await send_checked("POST", url, content=body, allow_private=settings.notify_allow_private_networks,
                                    headers=signed_headers(request.message_id, timestamp, signature))
        status, response_headers = answer.status_code, answer.headers
        error = _outcome_error(status, response_headers, host)
        if error is not None:
            log.warning("webhook not delivered", error_type=error.type, reason=error.message)
            raise error
        log.info("webhook delivered", status_code=status)
        return WebhookDeliveryResult(delivered=True, status_code=status, attempt=info.attempt, target_host=host)

"""The `http-call` activity: one request to an external API for a declarative workflow's `http`
step (workflows/declarative.py).

The target passes the same SSRF guard as every webhook (activities/notify/webhook.py): http(s),
no loopback, private, link-local or other non-public address unless the development setting
allows it, the request sent to the very address checked, no redirects followed. Every request
carries an `Idempotency-Key` derived from the run and the step, the same on every retry.

Temporal owns retries: 408, 429 and 5xx are retryable (`HttpUnavailable`), any other status
outside the step's `expect` is `HttpRejected` (non-retryable), and an answer's JSON body (up to
1 MiB) is the step's output.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.llm.providers.openai_compatible import retry_after
from activities.notify.webhook import USER_AGENT, send_checked, target_host
from steward import runtime
from steward.logs import get_logger

log = get_logger(__name__)

HTTP_UNAVAILABLE = "HttpUnavailable"
HTTP_REJECTED = "HttpRejected"
HTTP_MISCONFIGURED = "HttpMisconfigured"  # an endpoint name no setting gives a URL: not retried
MAX_BODY_BYTES = 1_048_576


class HttpCallRequest(BaseModel):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    endpoint: str | None = Field(None, description="A name in STEWARD_HTTP_ENDPOINTS: `url` is a path under it.")
    url: str
    json_body: Any = None
    expect: list[int] = Field(min_length=1)
    idempotency_key: str


class HttpCallResult(BaseModel):
    status_code: int
    url: str = Field("", description="The URL called.")
    body: Any = Field(None, description="The answer's JSON, when it is JSON of at most 1 MiB.")


@activity.defn(name="http-call")
async def http_call(request: HttpCallRequest) -> HttpCallResult:
    settings = runtime.settings()
    url = request.url
    if request.endpoint is not None:
        base = settings.http_endpoints.get(request.endpoint)
        if base is None:
            raise ApplicationError(f"no endpoint {request.endpoint!r} in STEWARD_HTTP_ENDPOINTS",
                                   type=HTTP_MISCONFIGURED, non_retryable=True)
        url = base.rstrip("/") + "/" + request.url.lstrip("/")
    host = target_host(url)
    headers = {"idempotency-key": request.idempotency_key, "user-agent": USER_AGENT, "accept": "application/json"}
    content = None
    if request.json_body is not None:
        content = json.dumps(request.json_body, separators=(",", ":")).encode()
        headers["content-type"] = "application/json"
    answer = await send_checked(request.method, url, content=content, headers=headers,
                                allow_private=settings.notify_allow_private_networks, read_limit=MAX_BODY_BYTES,
                                unavailable=HTTP_UNAVAILABLE)
    status, raw, answer_headers = answer.status_code, answer.body, answer.headers
    if status in request.expect:
        log.info("http step answered", target_host=host, status_code=status)
        return HttpCallResult(status_code=status, url=url, body=_json(raw, answer_headers))
    if status in (408, 429) or status >= 500:
        raise ApplicationError(f"{host} answered {status}", type=HTTP_UNAVAILABLE,
                               next_retry_delay=retry_after(answer_headers) if status == 429 else None)
    raise ApplicationError(f"{host} answered {status}, not one of {request.expect}", {"status_code": status},
                           type=HTTP_REJECTED, non_retryable=True)


def _json(raw: bytes, headers: httpx.Headers) -> Any:
    if not raw or "json" not in headers.get("content-type", ""):
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None

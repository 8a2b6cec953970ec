"""Signed webhooks: real receivers on real sockets, signatures checked by the Standard Webhooks
reference implementation (not by our own code), retries owned by Temporal, and no request ever
sent to a target the SSRF guard refuses."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from pydantic import SecretStr
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.notify import webhook
from activities.notify.webhook import (
    WebhookDeliveryRequest,
    WebhookDeliveryResult,
    WebhookTarget,
    deliver_webhook,
    sign,
)
from steward import runtime
from steward.settings import Settings, webhook_secret
from tests.support import free_port, wait_for_run, watch, serve_asgi
from tests.workflow_fixtures.notify import NotifyInput, NotifyOutput
from workflows.notifications import MEMO_KEY
from workflows.spec import DEFAULT_TASK_QUEUE

SECRET = webhook_secret()
watch("a webhook secret", SECRET)
EVENT = {"event_type": "run.completed", "data": {"run": "r-1", "outcome": "approved", "note": "café"}}


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay_s: float = 0.0


@dataclass
class Received:
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver that records every request and answers from a script, then `default`."""

    url: str
    default: Reply = field(default_factory=Reply)
    replies: list[Reply] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)

    def script(self, *replies: Reply, default: Reply | None = None) -> None:
        self.replies = list(replies)
        self.default = default or Reply()

    async def handle(self, request: Request) -> Response:
        self.requests.append(Received(request.url.path, request.url.query, dict(request.headers),
                                      await request.body()))
        reply = self.replies.pop(0) if self.replies else self.default
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        return Response(reply.body, status_code=reply.status, headers=reply.headers)

    def verified(self, secret: str = SECRET) -> list[dict]:
        """Every request's payload, each checked by the reference implementation (raises if not)."""
        return [Webhook(secret).verify(r.body, r.headers) for r in self.requests]


@asynccontextmanager
async def serve_receiver(port: int | None = None, receiver: Receiver | None = None) -> AsyncIterator[Receiver]:
    """A receiver on `port` (a free one by default); pass `receiver` to serve one that was down."""
    port = port or free_port()
    receiver = receiver or Receiver(url=f"http://127.0.0.1:{port}/hooks")
    app = Starlette(routes=[Route("/{path:path}", receiver.handle, methods=["POST"])])
    async with serve_asgi(app, port):
        yield receiver


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as r:
        yield r


@pytest.fixture
def use_settings(settings: Settings) -> Iterator[Callable[..., Settings]]:
    """use_settings(**changes): what activities read from now on (the suite's, with our secret);
    the suite's settings come back after the test."""

    def use(**changes) -> Settings:
        own = settings.model_copy(update={"notify_webhook_secret": SecretStr(SECRET), **changes})
        runtime.configure(own)
        return own

    use()
    yield use
    runtime.configure(settings)


async def run_notify(http, auth, **input_) -> dict:
    started = await http.post("/v1/workflows/test-notify/runs",
                              json={"input": {**EVENT, "fast_retry": True, **input_}}, headers=auth())
    assert started.status_code == 202, started.text
    run = await wait_for_run(http, started.json()["id"], auth())
    assert run["status"] == "completed", run
    return run


async def deliver(url: str | None, kind: str = "callback", message_id: str = "msg-1") -> WebhookDeliveryResult:
    request = WebhookDeliveryRequest(target=WebhookTarget(kind=kind, url=url), message_id=message_id, **EVENT)
    return await ActivityEnvironment().run(deliver_webhook, request)


async def refusal(url: str | None, kind: str = "callback") -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await deliver(url, kind)
    return caught.value


# --- Signing -------------------------------------------------------------------------------

def test_signature_is_the_reference_implementations_with_one_per_live_secret():
    body = b'{"data":{"a":1},"timestamp":"2026-01-02T03:04:05.000Z","type":"x"}'
    timestamp = 1_767_323_045
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    expected = Webhook(SECRET).sign("msg-1", moment, body.decode())
    assert sign([SECRET], "msg-1", timestamp, body) == expected
    assert sign([SECRET.removeprefix("whsec_")], "msg-1", timestamp, body) == expected
    rotated = webhook_secret()
    assert sign([rotated, SECRET], "msg-1", timestamp, body) == (
        f"{Webhook(rotated).sign('msg-1', moment, body.decode())} {expected}")
    headers = {"webhook-id": "msg-1", "webhook-timestamp": str(int(time.time())), "webhook-signature": sign(
        [rotated, SECRET], "msg-1", int(time.time()), body)}
    for secret in (rotated, SECRET):  # receivers on either secret accept it
        assert Webhook(secret).verify(body, headers) == json.loads(body)


def test_a_secret_that_is_not_base64_is_refused():
    with pytest.raises(ValueError):
        sign(["whsec_not base64!"], "msg-1", 0, b"{}")


# --- Through a real worker -------------------------------------------------------------------

async def test_delivery_is_signed_and_verifies_with_the_reference_library(receiver, use_settings, http, auth):
    run = await run_notify(http, auth, callback_url=receiver.url)

    callback, platform = (NotifyOutput.model_validate(run["result"])).records
    assert callback.delivered and callback.status_code == 200 and callback.attempts == 1
    assert callback.target_host == "127.0.0.1"
    assert platform.skipped and not platform.delivered  # no platform webhook configured
    (sent,) = receiver.requests
    (payload,) = receiver.verified()
    assert payload["type"] == "run.completed" and payload["data"] == EVENT["data"]
    assert datetime.fromisoformat(payload["timestamp"]).tzinfo is not None
    assert sent.headers["webhook-id"] == f"{run['id']}:notify:callback"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["user-agent"] == "Steward-Webhooks/1"
    with pytest.raises(WebhookVerificationError):
        Webhook(webhook_secret()).verify(sent.body, sent.headers)  # the check above can fail


async def test_a_retry_resends_the_same_webhook_id_and_body(receiver, use_settings, http, auth):
    receiver.script(Reply(500), default=Reply(200))
    run = await run_notify(http, auth, callback_url=receiver.url)

    callback = NotifyOutput.model_validate(run["result"]).records[0]
    assert callback.delivered and callback.attempts == 2
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == f"{run['id']}:notify:callback"
    assert first.body == second.body  # the event's time comes from the workflow, not the attempt
    assert len(receiver.verified()) == 2  # each attempt signed afresh, both valid


async def test_a_receiver_that_keeps_failing_does_not_fail_the_run(receiver, use_settings, http, auth):
    receiver.script(default=Reply(503))
    run = await run_notify(http, auth, callback_url=receiver.url)  # asserts completed

    callback = NotifyOutput.model_validate(run["result"]).records[0]
    assert not callback.delivered and callback.error_type == "WebhookUnavailable"
    assert callback.attempts == 3 and "503" in callback.error
    assert len(receiver.requests) == 3 and len({r.headers["webhook-id"] for r in receiver.requests}) == 1


@pytest.mark.parametrize("status", [400, 410])
async def test_a_refusal_is_not_retried_and_its_body_not_repeated(status, receiver, use_settings, http, auth):
    receiver.script(default=Reply(status, body=b"receiver-internal-detail"))
    run = await run_notify(http, auth, callback_url=receiver.url)

    callback = NotifyOutput.model_validate(run["result"]).records[0]
    assert not callback.delivered and callback.error_type == "WebhookRejected" and callback.attempts == 1
    assert str(status) in callback.error and "receiver-internal-detail" not in json.dumps(run)
    assert len(receiver.requests) == 1


async def test_the_platform_webhook_gets_its_own_verified_delivery(receiver, use_settings, http, auth):
    async with serve_receiver() as platform_receiver:
        use_settings(notify_webhook_url=platform_receiver.url)
        run = await run_notify(http, auth, callback_url=receiver.url)

        callback, platform = NotifyOutput.model_validate(run["result"]).records
        assert callback.delivered and platform.delivered and not platform.skipped
        assert platform.target_host == "127.0.0.1"
        (payload,) = platform_receiver.verified()
        assert payload == receiver.verified()[0]  # one event, two receivers
        assert platform_receiver.requests[0].headers["webhook-id"] == f"{run['id']}:notify:platform"


async def test_the_platform_webhook_is_skipped_when_not_configured(use_settings, http, auth):
    run = await run_notify(http, auth)
    (platform,) = NotifyOutput.model_validate(run["result"]).records
    assert platform.kind == "platform" and platform.skipped and not platform.delivered
    assert platform.error_type is None


async def test_secret_and_callback_query_stay_out_of_logs_and_memo(receiver, use_settings, client: Client,
                                                                   worker, log_lines):
    token = f"tok-{uuid.uuid4().hex}"
    receiver.script(Reply(500), default=Reply(401))  # the failure paths are where things leak
    handle = await client.start_workflow(
        "test-notify", NotifyInput(callback_url=f"{receiver.url}?token={token}", fast_retry=True, **EVENT),
        id=f"test-notify-{uuid.uuid4().hex}", task_queue=DEFAULT_TASK_QUEUE, result_type=NotifyOutput,
    )
    result = await handle.result()

    assert receiver.requests[0].query == f"token={token}"  # it was used
    assert result.records[0].error_type == "WebhookRejected"
    logged = "\n".join(log_lines.lines)
    assert "webhook not delivered" in logged and "notification not delivered" in logged  # lines were captured
    assert "127.0.0.1" in logged  # the host is named...
    assert token not in logged  # ...never the query
    assert SECRET not in logged and SECRET.removeprefix("whsec_") not in logged
    memo = await (await handle.describe()).memo()
    assert [r["kind"] for r in memo[MEMO_KEY]] == ["callback", "platform"]
    assert memo[MEMO_KEY][0]["target_host"] == "127.0.0.1"
    assert token not in json.dumps(memo) and token not in result.model_dump_json()


# --- One attempt, in an ActivityEnvironment ----------------------------------------------------

async def test_rate_limiting_retries_after_the_receivers_retry_after(receiver, use_settings):
    receiver.script(default=Reply(429, headers={"Retry-After": "7"}))
    error = await refusal(receiver.url)
    assert error.type == "WebhookRateLimited" and not error.non_retryable
    assert error.next_retry_delay == timedelta(seconds=7)


@pytest.mark.parametrize("status, error_type, non_retryable", [
    (408, "WebhookUnavailable", False), (500, "WebhookUnavailable", False), (502, "WebhookUnavailable", False),
    (401, "WebhookRejected", True), (404, "WebhookRejected", True), (422, "WebhookRejected", True),
])
async def test_status_codes_map_to_typed_errors(status, error_type, non_retryable, receiver, use_settings):
    receiver.script(default=Reply(status))
    error = await refusal(receiver.url)
    assert (error.type, error.non_retryable) == (error_type, non_retryable)
    assert error.details[0] == {"target_host": "127.0.0.1", "attempt": 1}


async def test_a_redirect_is_not_followed(receiver, use_settings):
    async with serve_receiver() as elsewhere:
        receiver.script(default=Reply(307, headers={"Location": elsewhere.url}))
        error = await refusal(receiver.url)
        assert error.type == "WebhookRejected" and error.non_retryable
        assert len(receiver.requests) == 1 and elsewhere.requests == []


async def test_a_slow_receiver_times_out_as_retryable(receiver, use_settings, monkeypatch):
    monkeypatch.setattr(webhook, "HTTP_TIMEOUT", httpx.Timeout(0.2))
    receiver.script(default=Reply(200, delay_s=2))
    error = await refusal(receiver.url)
    assert error.type == "WebhookUnavailable" and "timed out" in error.message


async def test_an_unreachable_receiver_is_retryable(use_settings):
    error = await refusal(f"http://127.0.0.1:{free_port()}/hooks")  # nothing listens there
    assert error.type == "WebhookUnavailable" and not error.non_retryable


async def test_a_callback_target_without_a_url_is_refused(use_settings):
    error = await refusal(None)
    assert error.type == "WebhookTargetForbidden" and error.non_retryable


# --- The SSRF guard ------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{port}/hooks", "http://localhost:{port}/hooks", "http://10.0.0.5/",
    "http://169.254.169.254/latest/meta-data/", "http://[::1]/", "file:///etc/passwd", "gopher://127.0.0.1:{port}/",
])
async def test_forbidden_targets_are_refused_without_a_request(url, receiver, use_settings):
    use_settings(notify_allow_private_networks=False)
    port = receiver.url.rsplit(":", 1)[1].split("/")[0]
    error = await refusal(url.format(port=port))
    assert error.type == "WebhookTargetForbidden" and error.non_retryable
    assert receiver.requests == []


@pytest.mark.parametrize("url, kind", [
    # https, so it is the address check (not the scheme rule) that refuses them.
    ("https://127.0.0.1:{port}/hooks", "loopback"), ("https://localhost:{port}/hooks", "loopback"),
    ("https://10.0.0.5/", "private"), ("https://169.254.169.254/latest/meta-data/", "link-local"),
    ("https://[::1]/", "loopback"), ("https://[::ffff:127.0.0.1]/", "loopback"),
    ("https://0.0.0.0/", "unspecified"), ("https://224.0.0.1/", "multicast"),
    ("https://240.0.0.1/", "reserved"), ("https://100.100.100.200/", "non-public"),
])
async def test_internal_addresses_are_refused_by_the_address_check(url, kind, receiver, use_settings):
    use_settings(notify_allow_private_networks=False)
    port = receiver.url.rsplit(":", 1)[1].split("/")[0]
    error = await refusal(url.format(port=port))
    assert error.type == "WebhookTargetForbidden" and error.message.endswith(f"a {kind} address")
    assert receiver.requests == []


async def test_plain_http_is_refused_outside_development(use_settings):
    use_settings(notify_allow_private_networks=False)
    error = await refusal("http://example.com/hooks")
    assert error.type == "WebhookTargetForbidden" and "https" in error.message


async def test_every_resolved_address_is_checked(use_settings, monkeypatch):
    use_settings(notify_allow_private_networks=False)

    async def one_public_one_internal(host, port):
        return [webhook.ipaddress.ip_address("93.184.216.34"), webhook.ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(webhook, "_resolve", one_public_one_internal)
    error = await refusal("https://mixed.example/hooks")
    assert error.type == "WebhookTargetForbidden" and "loopback" in error.message


async def test_the_platform_url_is_guarded_too(receiver, use_settings):
    use_settings(notify_allow_private_networks=False, notify_webhook_url=receiver.url)
    error = await refusal(None, kind="platform")
    assert error.type == "WebhookTargetForbidden" and receiver.requests == []


async def test_the_connection_goes_to_the_checked_address(receiver, use_settings, monkeypatch):
    """DNS rebinding: the name is resolved once, and the request goes to that very address with
    the original name in its Host header. `rebind.example` does not exist, so a client that
    resolved it again could not have reached the receiver."""
    resolved: list[str] = []

    async def resolve_once(host, port):
        resolved.append(host)
        return [webhook.ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(webhook, "_resolve", resolve_once)
    port = receiver.url.rsplit(":", 1)[1].split("/")[0]
    result = await deliver(f"http://rebind.example:{port}/hooks?x=1")
    assert result.delivered and result.target_host == "rebind.example"
    assert resolved == ["rebind.example"]
    (sent,) = receiver.requests
    assert sent.headers["host"] == f"rebind.example:{port}" and sent.query == "x=1"
    receiver.verified()


async def test_each_checked_address_is_tried_in_turn_until_one_accepts_the_connection(receiver, use_settings,
                                                                                     monkeypatch):
    # The receiver listens on 127.0.0.1 only: 127.0.0.3 (loopback too, so allowed here) refuses.
    async def first_refuses(host, port):
        return [webhook.ipaddress.ip_address("127.0.0.3"), webhook.ipaddress.ip_address("127.0.0.1")]

    monkeypatch.setattr(webhook, "_resolve", first_refuses)
    port = receiver.url.rsplit(":", 1)[1].split("/")[0]
    result = await deliver(f"http://two-nodes.example:{port}/hooks")
    assert result.delivered
    (sent,) = receiver.requests  # sent once, to the address that took it
    assert sent.headers["host"] == f"two-nodes.example:{port}"


async def test_a_target_whose_every_address_refuses_is_unavailable_and_retried(use_settings, monkeypatch):
    async def none_listening(host, port):
        return [webhook.ipaddress.ip_address("127.0.0.3"), webhook.ipaddress.ip_address("127.0.0.4")]

    monkeypatch.setattr(webhook, "_resolve", none_listening)
    error = await refusal(f"http://nobody.example:{free_port()}/hooks")
    assert error.type == "WebhookUnavailable" and not error.non_retryable

"""Webhook subscriptions end to end: managed through the API, delivered by the workers to real
HTTP receivers, verified with the Standard Webhooks reference library (`standardwebhooks`).

Receivers that are down and come back, secrets rotated, 410 Gone, pausing, the delivery log and
redelivery, and a run's callback_url on the same machinery."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from datetime import timedelta

import httpx
import pytest
from httpx_sse import aconnect_sse
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.support import eventually, free_port, serve_api, wait_for_run, watch
from tests.test_compliance_workflow import CLEAR, PAYSLIP
from tests.test_webhooks import Receiver, Reply, serve_receiver

ADMIN = {"sub": "ada", "roles": ("admin",)}
CLEARED = {"input": {"applicant": CLEAR, "documents": [PAYSLIP]}}


async def subscribe(http, auth, url: str, **fields) -> tuple[dict, str]:
    body = {"url": url, "event_types": ["*"], "workflows": ["compliance-documentation"], **fields}
    response = await http.post("/v1/subscriptions", json=body, headers=auth(**ADMIN))
    assert response.status_code == 201, response.text
    created = response.json()
    watch("a subscription's secret", created["secret"])
    return created["subscription"], created["secret"]


async def start(http, auth, body: dict = CLEARED) -> str:
    response = await http.post("/v1/workflows/compliance-documentation/runs", json=body,
                               headers=auth(sub="rita", roles=("requester",)))
    assert response.status_code == 202, response.text
    return response.json()["id"]


async def run_events(http, auth, run_id: str) -> list[dict]:
    """The run's events as its stream gives them, once the run has ended."""
    async with aconnect_sse(http, "GET", f"/v1/runs/{run_id}/events", headers=auth()) as source:
        return [json.loads(sse.data) async for sse in source.aiter_sse()]


def deliveries_by_run(receiver: Receiver, secret: str) -> dict[str, list[dict]]:
    """Each received event, verified, grouped by run in arrival order."""
    by_run: dict[str, list[dict]] = defaultdict(list)
    for request in receiver.requests:
        payload = Webhook(secret).verify(request.body, request.headers)
        assert request.headers["webhook-id"] == payload["data"]["id"]
        by_run[payload["data"]["run_id"]].append(payload["data"])
    return by_run


async def test_a_receiver_that_was_down_gets_every_event_once_and_in_order_per_run(http, auth):
    port = free_port()
    receiver = Receiver(url=f"http://127.0.0.1:{port}/hooks")
    _, secret = await subscribe(http, auth, receiver.url)
    runs = [await start(http, auth), await start(http, auth)]
    for run_id in runs:
        await wait_for_run(http, run_id, auth())
    expected = {run_id: await run_events(http, auth, run_id) for run_id in runs}
    assert not receiver.requests  # nobody was listening

    async with serve_receiver(port, receiver):
        async def all_arrived() -> bool | None:
            got = deliveries_by_run(receiver, secret)
            return True if all(len(got[r]) >= len(expected[r]) for r in runs) else None

        await eventually(all_arrived, "every event to arrive once the receiver is up", deadline_s=120)
        await asyncio.sleep(1)  # anything extra would arrive now

    got = deliveries_by_run(receiver, secret)
    for run_id in runs:
        assert [e["id"] for e in got[run_id]] == [e["id"] for e in expected[run_id]]  # once each, in order
        assert [e["sequence"] for e in got[run_id]] == list(range(1, len(expected[run_id]) + 1))
        assert got[run_id] == expected[run_id]  # the same event, streamed or delivered
    text = b"".join(r.body for r in receiver.requests).decode()
    assert CLEAR["full_name"] not in text and CLEAR["document_id"] not in text and "rita" not in text


async def test_subscriptions_are_managed_per_tenant_by_admins_only(http, auth, tenant):
    created, secret = await subscribe(http, auth, "http://127.0.0.1:9/hooks", description="CI dashboard",
                                      event_types=["run.completed", "run.failed"])
    assert secret.startswith("whsec_") and created["status"] == "active"
    sub_id = created["id"]
    listed = (await http.get("/v1/subscriptions", headers=auth(**ADMIN))).json()["subscriptions"]
    assert [s["id"] for s in listed] == [sub_id] and secret not in json.dumps(listed)

    changed = await http.patch(f"/v1/subscriptions/{sub_id}", json={"event_types": ["run.completed"]},
                               headers=auth(**ADMIN))
    assert changed.status_code == 200 and changed.json()["event_types"] == ["run.completed"]
    paused = await http.post(f"/v1/subscriptions/{sub_id}/pause", json={"reason": "maintenance"},
                             headers=auth(**ADMIN))
    assert paused.json()["status"] == "paused" and paused.json()["status_reason"] == "maintenance"
    resumed = await http.post(f"/v1/subscriptions/{sub_id}/resume", headers=auth(**ADMIN))
    assert resumed.json()["status"] == "active"

    assert (await http.get(f"/v1/subscriptions/{sub_id}", headers=auth(**ADMIN, tenant="other"))).status_code == 404
    refused = await http.get("/v1/subscriptions", headers=auth(roles=("operator",)))
    assert refused.status_code == 403 and refused.json()["error"]["details"]["permission"] == "subscriptions:manage"

    for body, field in (({"url": "http://127.0.0.1:9/", "event_types": ["run.exploded"]}, "event_types"),
                        ({"url": "http://127.0.0.1:9/", "event_types": []}, "event_types"),
                        ({"url": "not a url", "event_types": ["*"]}, "url"),
                        ({"url": "http://127.0.0.1:9/", "event_types": ["*"], "workflows": ["nope"]}, "workflows"),
                        ({"url": "http://127.0.0.1:9/", "event_types": ["*"], "secret": "mine"}, "secret"),
                        ({"url": "http://127.0.0.1:9/", "event_types": ["*"] * 51}, "event_types")):
        response = await http.post("/v1/subscriptions", json=body, headers=auth(**ADMIN))
        assert response.status_code == 422, body
        assert response.json()["error"]["details"][0]["field"] == field, response.json()

    assert (await http.delete(f"/v1/subscriptions/{sub_id}", headers=auth(**ADMIN))).status_code == 204
    assert (await http.get(f"/v1/subscriptions/{sub_id}", headers=auth(**ADMIN))).status_code == 404


async def test_a_tenant_has_at_most_a_hundred_subscriptions(http, auth, tenant):
    from api.routes.subscriptions import MAX_SUBSCRIPTIONS_PER_TENANT

    body = {"url": "http://127.0.0.1:9/hooks", "event_types": ["run.completed"]}
    for _ in range(MAX_SUBSCRIPTIONS_PER_TENANT):
        assert (await http.post("/v1/subscriptions", json=body, headers=auth(**ADMIN))).status_code == 201
    refused = await http.post("/v1/subscriptions", json=body, headers=auth(**ADMIN))
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "too_many_subscriptions"
    other = auth(**ADMIN, tenant=f"{tenant}-other")
    assert (await http.post("/v1/subscriptions", json=body, headers=other)).status_code == 201


async def test_private_and_plain_http_targets_are_refused_unless_allowed(client, settings, worker, auth):
    strict = settings.model_copy(update={"api_port": free_port(), "notify_allow_private_networks": False})
    async with serve_api(strict, client) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        for target, reason in (("http://example.com/hooks", "https"), ("https://127.0.0.1/hooks", "loopback"),
                               ("https://169.254.169.254/latest", "link-local"), ("https://10.1.2.3/", "private")):
            response = await http.post("/v1/subscriptions", json={"url": target, "event_types": ["*"]},
                                       headers=auth(**ADMIN))
            assert response.status_code == 422, target
            detail = response.json()["error"]["details"][0]
            assert detail["field"] == "url" and reason in detail["message"], detail
        # A name that does not resolve now is kept: every delivery resolves and checks it again.
        unresolved = await http.post("/v1/subscriptions", json={"url": "https://hooks.steward-test.invalid/x",
                                                                 "event_types": ["*"]}, headers=auth(**ADMIN))
        assert unresolved.status_code == 201, unresolved.text
        watch("a subscription's secret", unresolved.json()["secret"])


async def test_after_a_rotation_both_secrets_sign_until_the_grace_period_ends(http, auth, receiver):
    created, old = await subscribe(http, auth, receiver.url, event_types=["run.completed"])
    rotated = await http.post(f"/v1/subscriptions/{created['id']}/rotate-secret", headers=auth(**ADMIN))
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    watch("a rotated secret", new)
    assert new != old and rotated.json()["subscription"]["previous_secret_valid_until"]
    run_id = await start(http, auth)
    await eventually(lambda: _received(receiver, 1), "the completion to be delivered")
    (request,) = receiver.requests
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):  # a receiver on either secret accepts it
        assert Webhook(secret).verify(request.body, request.headers)["data"]["run_id"] == run_id


async def test_once_the_grace_period_is_over_only_the_new_secret_signs(client, settings, worker, auth, receiver):
    no_grace = settings.model_copy(update={"api_port": free_port(), "subscription_secret_grace_hours": 0})
    async with serve_api(no_grace, client) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        created, old = await subscribe(http, auth, receiver.url, event_types=["run.completed"])
        new = (await http.post(f"/v1/subscriptions/{created['id']}/rotate-secret", headers=auth(**ADMIN))).json()[
            "secret"]
        watch("a rotated secret", new)
        await start(http, auth)
        await eventually(lambda: _received(receiver, 1), "the completion to be delivered")
    (request,) = receiver.requests
    Webhook(new).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(request.body, request.headers)


async def test_a_410_disables_the_subscription_and_tells_the_tenant(http, auth, receiver):
    receiver.script(default=Reply(status=410))
    created, _ = await subscribe(http, auth, receiver.url, event_types=["run.completed"])
    async with aconnect_sse(http, "GET", "/v1/events?type=subscription.disabled", headers=auth()) as source:
        await start(http, auth)
        notice = json.loads((await anext(source.aiter_sse())).data)
    assert notice["type"] == "subscription.disabled" and notice["run_id"] is None
    assert notice["data"] == {"subscription_id": created["id"], "reason": "the receiver answered 410 Gone"}
    shown = (await http.get(f"/v1/subscriptions/{created['id']}", headers=auth(**ADMIN))).json()
    assert shown["status"] == "disabled" and "410" in shown["status_reason"]
    (delivery,) = (await http.get(f"/v1/subscriptions/{created['id']}/deliveries",
                                  headers=auth(**ADMIN))).json()["deliveries"]
    assert delivery["status"] == "failed" and [a["status_code"] for a in delivery["attempts"]] == [410]
    assert len(receiver.requests) == 1  # never retried


async def test_the_delivery_log_shows_attempts_and_redelivers(http, auth, receiver):
    receiver.script(Reply(status=500), default=Reply(status=204))
    created, secret = await subscribe(http, auth, receiver.url, event_types=["run.completed"])
    await start(http, auth)
    await eventually(lambda: _received(receiver, 2), "a failed attempt, then the delivery")
    path = f"/v1/subscriptions/{created['id']}/deliveries"

    async def delivered() -> dict | None:
        (delivery,) = (await http.get(path, headers=auth(**ADMIN))).json()["deliveries"]
        return delivery if delivery["status"] == "delivered" else None

    delivery = await eventually(delivered, "the delivery to be logged as delivered")
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 204]
    assert delivery["attempts"][0]["error"] == "the receiver answered 500"
    assert all(a["latency_ms"] >= 0 for a in delivery["attempts"]) and delivery["event_type"] == "run.completed"

    again = await http.post(f"{path}/{delivery['id']}/redeliver", headers=auth(**ADMIN))
    assert again.status_code == 202
    await eventually(lambda: _received(receiver, 3), "the redelivery")
    first, resent = receiver.requests[1], receiver.requests[2]
    assert first.headers["webhook-id"] == resent.headers["webhook-id"]
    assert Webhook(secret).verify(resent.body, resent.headers) == Webhook(secret).verify(first.body, first.headers)
    missing = await http.post(f"{path}/dlv_nope/redeliver", headers=auth(**ADMIN))
    assert missing.status_code == 404


async def test_a_paused_subscription_logs_events_as_skipped_and_sends_nothing(http, auth, receiver):
    created, _ = await subscribe(http, auth, receiver.url, event_types=["run.completed"])
    await http.post(f"/v1/subscriptions/{created['id']}/pause", headers=auth(**ADMIN))
    run_id = await start(http, auth)
    await wait_for_run(http, run_id, auth())
    path = f"/v1/subscriptions/{created['id']}/deliveries"

    async def logged() -> dict | None:
        deliveries = (await http.get(path, headers=auth(**ADMIN))).json()["deliveries"]
        return deliveries[0] if deliveries else None

    skipped = await eventually(logged, "the skipped delivery to be logged")
    assert skipped["status"] == "skipped" and skipped["attempts"] == []
    refused = await http.post(f"{path}/{skipped['id']}/redeliver", headers=auth(**ADMIN))
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "subscription_not_active"
    await http.post(f"/v1/subscriptions/{created['id']}/resume", headers=auth(**ADMIN))
    assert (await http.post(f"{path}/{skipped['id']}/redeliver", headers=auth(**ADMIN))).status_code == 202
    await eventually(lambda: _received(receiver, 1), "the redelivered event")
    assert not receiver.requests[1:]


async def test_a_runs_callback_url_hears_its_end_on_the_same_machinery(http, auth, receiver, settings):
    run_id = await start(http, auth, {**CLEARED, "callback_url": f"{receiver.url}/done?token=abc"})
    run = await wait_for_run(http, run_id, auth())
    assert run["callback_url"] == f"{receiver.url}/done?REDACTED"  # the token is the receiver's credential
    await eventually(lambda: _received(receiver, 1), "the callback")
    await asyncio.sleep(0.5)
    (request,) = receiver.requests  # the end only
    payload = Webhook(settings.webhook_signing_secret()).verify(request.body, request.headers)
    assert payload["type"] == "run.completed" and payload["data"]["run_id"] == run_id
    assert request.query == "token=abc"
    assert [n["kind"] for n in run["result"]["notifications"]] == ["platform"]
    assert CLEAR["full_name"] not in request.body.decode()


async def test_a_day_of_failed_deliveries_disables_the_subscription(skipping_env, skipping_api, auth):
    # Nobody listens on this port. A day of retries passes in moments on the time-skipping server.
    created = await skipping_api.post("/v1/subscriptions", headers=auth(**ADMIN), json={
        "url": f"http://127.0.0.1:{free_port()}/gone", "event_types": ["run.completed"]})
    sub_id = created.json()["subscription"]["id"]
    watch("a subscription's secret", created.json()["secret"])
    run_id = await start(skipping_api, auth)
    await wait_for_run(skipping_api, run_id, auth())

    async def disabled() -> dict | None:
        await skipping_env.sleep(timedelta(hours=6))
        shown = (await skipping_api.get(f"/v1/subscriptions/{sub_id}", headers=auth(**ADMIN))).json()
        return shown if shown["status"] == "disabled" else None

    shown = await eventually(disabled, "the subscription to be disabled after a day")
    assert shown["status_reason"] == "an event could not be delivered for 1 day(s)"
    (delivery,) = (await skipping_api.get(f"/v1/subscriptions/{sub_id}/deliveries",
                                          headers=auth(**ADMIN))).json()["deliveries"]
    assert delivery["status"] == "failed" and len(delivery["attempts"]) > 10
    assert all(a["status_code"] is None and a["error"] for a in delivery["attempts"])


async def test_a_cancellation_asked_through_the_api_reaches_subscribers_before_the_end(http, auth, receiver, gate):
    _, secret = await subscribe(http, auth, receiver.url, event_types=["run.cancel_requested", "run.cancelled"],
                                workflows=["test-gated"])
    run_id = (await http.post("/v1/workflows/test-gated/runs", json={"input": gate}, headers=auth())).json()["id"]
    assert (await http.post(f"/v1/runs/{run_id}/cancel", headers=auth())).status_code == 202
    await eventually(lambda: _received(receiver, 2), "the request and the end")
    assert [Webhook(secret).verify(r.body, r.headers)["type"] for r in receiver.requests] == [
        "run.cancel_requested", "run.cancelled"]


async def _received(receiver: Receiver, count: int) -> bool | None:
    return True if len(receiver.requests) >= count else None


@pytest.fixture
async def receiver():
    async with serve_receiver() as r:
        yield r


async def test_a_worker_killed_during_a_delivery_loses_nothing(tmp_path):
    """A real `steward up`: the worker is SIGKILLed while a receiver holds its first delivery open.
    The supervisor restarts it, Temporal retries the lost attempt, and every event arrives."""
    import os
    import signal

    from steward.identity import Principal, issue_token
    from tests.test_supervisor import SECRET, running_steward

    def bearer(*roles: str) -> dict[str, str]:
        token = issue_token(SECRET, Principal(sub="sam", roles=roles, tenant="acme"), timedelta(minutes=10))
        return {"Authorization": f"Bearer {token}"}

    async with serve_receiver() as receiver, running_steward(
            tmp_path, STEWARD_NOTIFY_ALLOW_PRIVATE_NETWORKS="true") as steward:
        receiver.script(Reply(delay_s=5))  # the first delivery is in flight when the worker dies
        async with httpx.AsyncClient(base_url=steward.api_url, timeout=30) as http:
            created = await http.post("/v1/subscriptions", headers=bearer("admin"), json={
                "url": receiver.url, "event_types": ["*"], "workflows": ["document-fingerprint"]})
            secret = created.json()["secret"]
            watch("a subscription's secret", secret)
            started = await http.post("/v1/workflows/document-fingerprint/runs", headers=bearer("operator"),
                                      json={"input": {"documents": [{"name": "a.txt", "text": "hello"}]}})
            run_id = started.json()["id"]
            await eventually(lambda: _received(receiver, 1), "the first delivery to reach the receiver")
            (worker,) = steward.child_pids("worker")
            os.kill(worker, signal.SIGKILL)
            await wait_for_run(http, run_id, bearer("operator"))
            async with aconnect_sse(http, "GET", f"/v1/runs/{run_id}/events", headers=bearer("operator")) as source:
                expected = [json.loads(sse.data)["id"] async for sse in source.aiter_sse()]

            async def all_arrived() -> list[str] | None:
                ids = list(dict.fromkeys(r.headers["webhook-id"] for r in receiver.requests))
                return ids if len(ids) >= len(expected) else None

            arrived = await eventually(all_arrived, "every event after the restart", deadline_s=120)
    assert arrived == expected  # each event, in order (the one cut off arrived again: same webhook-id)
    assert len(steward.child_pids("worker")) == 2
    for request in receiver.requests:
        Webhook(secret).verify(request.body, request.headers)


@pytest.mark.parametrize(("url", "shown"), [
    ("https://user:s3cret@hooks.example.com/ci/done?token=abc#frag",
     "https://REDACTED@hooks.example.com/ci/done?REDACTED#REDACTED"),
    ("https://hooks.example.com:8443/done", "https://hooks.example.com:8443/done"),
    ("http://[2001:db8::1]:9000/x?sig=1", "http://[2001:db8::1]:9000/x?REDACTED"),
])
def test_a_runs_callback_url_is_shown_without_its_credentials(url, shown):
    from api.run_records import redacted_url

    assert redacted_url(url) == shown

"""The timeout ladder (remind, escalate, decide) on the time-skipping server: days pass in
milliseconds, and no test depends on wall-clock timing."""

from __future__ import annotations

from datetime import timedelta

from steward import search_attributes as sa
from tests.support import eventually, wait_for_run

LADDER = [
    {"after": "PT24H", "action": "remind"},
    {"after": "PT72H", "action": "escalate", "to_roles": ["compliance_lead"]},
    {"after": "PT144H", "action": "decide", "decision": "reject", "reason": "approval timed out"},
]


async def start(http, auth) -> str:
    body = {"input": {"approval": {"title": "KYC review", "summary": "Needs a person.", "ladder": LADDER}}}
    response = await http.post("/v1/workflows/test-approval/runs", json=body,
                               headers=auth(sub="alice", roles=("requester",)))
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]
    # A decision sent before the workflow has asked would be refused as "nothing pending".
    await eventually(lambda: _pending(http, auth, run_id), "the approval to be requested")
    return run_id


async def _pending(http, auth, run_id) -> bool:
    return bool((await run_of(http, auth, run_id))["approvals"])


async def run_of(http, auth, run_id) -> dict:
    return (await http.get(f"/v1/runs/{run_id}", headers=auth())).json()


async def test_unanswered_approval_is_reminded_escalated_then_rejected_by_the_ladder(
        skipping_env, skipping_api, auth):
    run_id = await start(skipping_api, auth)
    await skipping_env.sleep(timedelta(hours=25))
    run = await run_of(skipping_api, auth, run_id)
    assert run["status"] == "waiting_for_approval"
    assert [e["kind"] for e in run["approvals"][0]["events"]] == ["requested", "reminded"]

    await skipping_env.sleep(timedelta(hours=48))  # 73 h
    state = (await run_of(skipping_api, auth, run_id))["approvals"][0]
    assert state["roles"] == ["compliance_lead"] and state["events"][-1]["kind"] == "escalated"
    refused = await skipping_api.post(f"/v1/runs/{run_id}/approvals", json={"decision": "approve"},
                                      headers=auth(sub="bob", roles=("approver",)))
    assert refused.status_code == 403 and "compliance_lead" in refused.json()["error"]["message"]

    await skipping_env.sleep(timedelta(hours=72))  # 145 h
    run = await wait_for_run(skipping_api, run_id, auth())
    assert run["result"] == {**run["result"], "approved": False, "status": "expired", "decided_by": ["policy"],
                             "reason": "approval timed out"}
    description = await skipping_env.client.get_workflow_handle(run_id).describe()
    assert description.typed_search_attributes.get(sa.APPROVAL_STATE) == "expired"


async def test_escalated_approval_is_decided_by_the_role_it_escalated_to(skipping_env, skipping_api, auth):
    run_id = await start(skipping_api, auth)
    await skipping_env.sleep(timedelta(hours=73))
    response = await skipping_api.post(f"/v1/runs/{run_id}/approvals", json={"decision": "approve", "comment": "ok"},
                                       headers=auth(sub="lena", roles=("compliance_lead",)))
    assert response.status_code == 200, response.text
    run = await wait_for_run(skipping_api, run_id, auth())
    assert run["result"]["approved"] is True and run["result"]["decided_by"] == ["lena"]
    kinds = [e["kind"] for e in run["approvals"][0]["events"]]
    assert kinds == ["requested", "reminded", "escalated", "voted", "decided"]


async def test_decision_before_the_first_rung_stops_the_ladder(skipping_env, skipping_api, auth):
    run_id = await start(skipping_api, auth)
    response = await skipping_api.post(f"/v1/runs/{run_id}/approvals", json={"decision": "reject"},
                                       headers=auth(sub="bob", roles=("approver",)))
    assert response.status_code == 200
    run = await wait_for_run(skipping_api, run_id, auth())
    assert run["result"]["status"] == "rejected"
    assert [e["kind"] for e in run["approvals"][0]["events"]] == ["requested", "voted", "decided"]


async def test_reminder_and_escalation_are_announced_on_the_platform_webhook(skipping_env, skipping_api, auth,
                                                                              settings):
    from standardwebhooks import Webhook

    from steward import runtime
    from tests.test_webhooks import serve_receiver

    async with serve_receiver() as receiver:
        runtime.configure(settings.model_copy(update={"notify_webhook_url": f"{receiver.url}/platform"}))
        try:
            run_id = await start(skipping_api, auth)
            await skipping_env.sleep(timedelta(hours=25))
            await eventually(lambda: _received(receiver, 1), "the reminder webhook")
            await skipping_env.sleep(timedelta(hours=48))
            await eventually(lambda: _received(receiver, 2), "the escalation webhook")
        finally:
            runtime.configure(settings)
        events = [Webhook(settings.webhook_signing_secret()).verify(r.body, r.headers) for r in receiver.requests]
    assert [e["type"] for e in events] == ["approval.reminder", "approval.escalated"]
    assert events[0]["data"]["run_id"] == run_id and events[0]["data"]["roles"] == ["approver"]
    assert events[1]["data"]["roles"] == ["compliance_lead"]
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 2  # one message per rung
    await skipping_api.post(f"/v1/runs/{run_id}/approvals", json={"decision": "reject"},
                            headers=auth(sub="lena", roles=("compliance_lead",)))
    await wait_for_run(skipping_api, run_id, auth())


async def _received(receiver, count: int) -> bool:
    return len(receiver.requests) >= count

"""Approvals: verified identity, separation of duties, roles, groups, tenants, quorum, receipts."""

from __future__ import annotations

import pytest
from temporalio import client as client_module
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError
from temporalio.converter import default as default_converter

from steward.identity import Principal, assertion_key, sign_assertion
from steward.identity_headers import HEADER
from tests.conftest import TEST_DATA_CONVERTER
from tests.support import eventually, wait_for_run
from workflows.approvals import DECIDE_UPDATE, DecisionInput, shown_digest

SHOWN = {"risk_level": "high", "reasons": ["Applicant is a politically exposed person."],
         "report": {"name": "compliance-report.pdf", "sha256": "ab" * 32}}


def approval(**overrides) -> dict:
    return {"key": "review", "title": "KYC review AB123", "summary": "High risk: PEP.", "shown": SHOWN, **overrides}


async def start_approval(http, auth, requester="alice", **overrides) -> str:
    response = await http.post("/v1/workflows/test-approval/runs", json={"input": {"approval": approval(**overrides)}},
                               headers=auth(sub=requester, roles=("requester", "approver")))
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]

    async def pending() -> bool:
        run = (await http.get(f"/v1/runs/{run_id}", headers=auth())).json()
        return bool(run["approvals"]) and run["status"] == "waiting_for_approval"

    await eventually(pending, "the run to wait for approval")
    return run_id


async def decide(http, headers, run_id, decision="approve", comment="", **extra):
    return await http.post(f"/v1/runs/{run_id}/approvals", json={"decision": decision, "comment": comment, **extra},
                           headers=headers)


async def test_approver_decision_completes_the_run_with_a_receipt_of_what_was_shown(http, auth, tenant):
    run_id = await start_approval(http, auth)
    response = await decide(http, auth(sub="bob", roles=("approver",)), run_id, comment="Checked the PEP register.")
    assert response.status_code == 200, response.text
    receipt = response.json()
    assert (receipt["approver"], receipt["roles"], receipt["tenant"]) == ("bob", ["approver"], tenant)
    assert (receipt["decision"], receipt["comment"], receipt["outcome"]) == ("approve", "Checked the PEP register.",
                                                                             "approved")
    assert receipt["shown_sha256"] == shown_digest("KYC review AB123", "High risk: PEP.", SHOWN)
    assert receipt["run_id"] == run_id and receipt["update_id"] and receipt["decided_at"]

    run = await wait_for_run(http, run_id, auth())
    assert run["status"] == "completed"
    assert run["result"]["approved"] is True and run["result"]["decided_by"] == ["bob"]
    (state,) = run["approvals"]
    assert state["status"] == "approved" and state["receipts"][0] == receipt
    assert [e["kind"] for e in state["events"]] == ["requested", "voted", "decided"]


async def test_requester_may_not_approve_their_own_run(http, auth):
    run_id = await start_approval(http, auth, requester="alice")
    response = await decide(http, auth(sub="alice", roles=("approver",)), run_id)
    assert response.status_code == 403
    error = response.json()["error"]
    assert "separation of duties" in error["message"] and error["details"]["reason"] == "ApprovalSeparationOfDuties"


async def test_caller_without_the_approvals_permission_is_refused_at_the_route(http, auth):
    run_id = await start_approval(http, auth)
    response = await decide(http, auth(sub="bob", roles=("auditor",)), run_id)
    assert response.status_code == 403
    assert response.json()["error"] == {"code": "forbidden", "message": "missing permission approvals:decide",
                                        "details": {"permission": "approvals:decide"}}


async def test_caller_without_the_approvals_required_role_is_refused_by_the_workflow(http, auth):
    run_id = await start_approval(http, auth)
    # compliance_lead may decide approvals in general, but this one asks for an approver.
    response = await decide(http, auth(sub="bob", roles=("compliance_lead",)), run_id)
    assert response.status_code == 403
    assert "approver" in response.json()["error"]["message"]
    assert response.json()["error"]["details"]["reason"] == "ApprovalRoleMissing"


async def test_caller_of_another_tenant_sees_no_such_run(http, auth):
    run_id = await start_approval(http, auth)
    response = await decide(http, auth(sub="mallory", roles=("approver",), tenant="other-tenant"), run_id)
    assert response.status_code == 404


async def test_group_restricted_approval_needs_membership(http, auth):
    run_id = await start_approval(http, auth, group="kyc-team")
    outsider = await decide(http, auth(sub="bob", roles=("approver",)), run_id)
    assert outsider.status_code == 403 and "kyc-team" in outsider.json()["error"]["message"]
    member = await decide(http, auth(sub="erin", roles=("approver",), groups=("kyc-team",)), run_id)
    assert member.status_code == 200


async def test_quorum_of_two_in_three_needs_two_distinct_approvals_and_refuses_a_second_vote(http, auth):
    run_id = await start_approval(http, auth, quorum=2, voters=3)
    first = await decide(http, auth(sub="bob", roles=("approver",)), run_id)
    assert first.status_code == 200 and first.json()["outcome"] == "pending"
    again = await decide(http, auth(sub="bob", roles=("approver",)), run_id)
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_voted"
    dissent = await decide(http, auth(sub="carol", roles=("approver",)), run_id, decision="reject")
    assert dissent.json()["outcome"] == "pending"  # one rejection still leaves two approvals possible
    final = await decide(http, auth(sub="dave", roles=("approver",)), run_id)
    assert final.json()["outcome"] == "approved"
    run = await wait_for_run(http, run_id, auth())
    assert run["result"]["decided_by"] == ["bob", "dave"] and len(run["result"]["receipts"]) == 3


async def test_quorum_is_rejected_once_approval_can_no_longer_be_reached(http, auth):
    run_id = await start_approval(http, auth, quorum=2, voters=3)
    await decide(http, auth(sub="bob", roles=("approver",)), run_id, decision="reject")
    second = await decide(http, auth(sub="carol", roles=("approver",)), run_id, decision="reject")
    assert second.json()["outcome"] == "rejected"
    run = await wait_for_run(http, run_id, auth())
    assert run["result"]["approved"] is False and run["result"]["decided_by"] == ["bob", "carol"]


class ForgedHeader(client_module.Interceptor, client_module.OutboundInterceptor):
    """Attaches a hand-made identity header to every update, as a caller going around the API would."""

    def __init__(self, payload) -> None:
        self.payload = payload

    def intercept_client(self, next):
        outbound = ForgedHeader(self.payload)
        client_module.OutboundInterceptor.__init__(outbound, next)
        return outbound

    async def start_workflow_update(self, input):
        input.headers = {**input.headers, HEADER: self.payload}
        return await super().start_workflow_update(input)


async def test_decision_around_the_api_without_a_verified_identity_is_refused_before_history(http, auth, client):
    run_id = await start_approval(http, auth)
    with pytest.raises(WorkflowUpdateFailedError) as no_header:
        await client.get_workflow_handle(run_id).execute_update(DECIDE_UPDATE, DecisionInput(decision="approve"))
    assert no_header.value.cause.type == "ApprovalUnverified"

    # A well-formed header signed with a guessed key: the format is public, the key is not.
    forged = sign_assertion(assertion_key("a-guessed-secret"), Principal(sub="bob", roles=("approver",), tenant="x"),
                            workflow_id=run_id, update_id="forged-1")
    forger = client_module.Client(client.service_client, namespace=client.namespace, data_converter=TEST_DATA_CONVERTER,
                                  interceptors=[ForgedHeader(default_converter().payload_converter.to_payload(forged))])
    with pytest.raises(WorkflowUpdateFailedError) as bad_signature:
        await forger.get_workflow_handle(run_id).execute_update(DECIDE_UPDATE, DecisionInput(decision="approve"),
                                                                id="forged-1")
    assert bad_signature.value.cause.type == "ApprovalUnverified"

    history = await client.get_workflow_handle(run_id).fetch_history()
    accepted = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED]
    assert accepted == []
    run = (await http.get(f"/v1/runs/{run_id}", headers=auth())).json()
    assert run["status"] == "waiting_for_approval" and run["approvals"][0]["receipts"] == []


async def test_decision_on_a_run_without_approvals_or_already_decided_is_409(http, auth, gate):
    gated = await http.post("/v1/workflows/test-gated/runs", json={"input": gate}, headers=auth())
    response = await decide(http, auth(sub="bob", roles=("approver",)), gated.json()["id"])
    assert response.status_code == 409 and response.json()["error"]["code"] == "not_pending"
    await http.post(f"/v1/runs/{gated.json()['id']}/cancel", headers=auth())

    run_id = await start_approval(http, auth)
    await decide(http, auth(sub="bob", roles=("approver",)), run_id)
    await wait_for_run(http, run_id, auth())
    late = await decide(http, auth(sub="carol", roles=("approver",)), run_id)
    assert late.status_code == 409 and late.json()["error"]["code"] == "not_pending"


async def test_bad_decision_body_is_422_naming_the_field(http, auth):
    run_id = await start_approval(http, auth)
    response = await http.post(f"/v1/runs/{run_id}/approvals", json={"decision": "maybe"},
                               headers=auth(sub="bob", roles=("approver",)))
    assert response.status_code == 422 and response.json()["error"]["details"][0]["field"] == "decision"


async def test_inbox_lists_what_the_caller_may_decide_and_nothing_else(http, auth):
    run_id = await start_approval(http, auth, requester="alice", quorum=2, voters=3)
    bob = auth(sub="bob", roles=("approver",))

    async def listed(headers) -> list[str]:
        response = await http.get("/v1/approvals", headers=headers)
        assert response.status_code == 200, response.text
        return [item["run_id"] for item in response.json()["approvals"]]

    await eventually(lambda: _contains(listed(bob), run_id), "the run in bob's inbox")
    item = next(i for i in (await http.get("/v1/approvals", headers=bob)).json()["approvals"] if i["run_id"] == run_id)
    assert (item["requested_by"], item["approval_key"], item["quorum"], item["approvals"]) == ("alice", "review", 2, 0)
    assert item["shown"] == SHOWN and item["links"]["decide"] == f"/v1/runs/{run_id}/approvals"
    assert run_id not in await listed(auth(sub="alice", roles=("approver",)))  # own run
    assert run_id not in await listed(auth(sub="lena", roles=("compliance_lead",)))  # not the approval's role
    assert (await http.get("/v1/approvals", headers=auth(sub="ivan", roles=("auditor",)))).status_code == 403
    assert run_id not in await listed(auth(sub="bob", roles=("approver",), tenant="elsewhere"))

    await decide(http, bob, run_id)
    assert run_id not in await listed(bob)  # already voted
    assert run_id in await listed(auth(sub="carol", roles=("approver",)))


async def _contains(awaitable, value) -> bool:
    return value in await awaitable


async def test_waiting_run_is_listed_as_waiting_and_the_ui_shows_who_is_awaited(http, auth, client):
    run_id = await start_approval(http, auth)
    await eventually(lambda: _run_listed(http, auth(), run_id), "the run under waiting_for_approval")
    metadata = await client.get_workflow_handle(run_id).query("__temporal_workflow_metadata")
    assert "Waiting for approval 'KYC review AB123' by approver (0 of 1 approvals) since" in metadata.current_details


async def _run_listed(http, headers, run_id) -> bool:
    response = await http.get("/v1/runs", params={"status": "waiting_for_approval"}, headers=headers)
    return run_id in [r["id"] for r in response.json()["runs"]]

"""The approver's inbox is one visibility query: full pages, exact tokens, nothing undecidable."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.worker import Replayer

from steward import search_attributes as sa
from tests.conftest import TEST_DATA_CONVERTER, test_interceptors
from tests.support import eventually, wait_for_run
from tests.test_approvals import approval, decide
from tests.workflow_fixtures.approval import TestApprovalWorkflow
from workers.audit import AuditInterceptor
from workers.worker import sandbox_runner
from workflows.approvals import MEMO_KEY, ApprovalReceipt, ApprovalState, inbox_attributes

PAGE_SIZE = 3


async def start_waiting_run(http, headers, **overrides) -> str:
    """A test-approval run, once it waits for its approval."""
    response = await http.post("/v1/workflows/test-approval/runs", json={"input": {"approval": approval(**overrides)}},
                               headers=headers)
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]

    async def waiting() -> bool:
        run = (await http.get(f"/v1/runs/{run_id}", headers=headers)).json()
        return run["status"] == "waiting_for_approval"

    await eventually(waiting, f"run {run_id} to wait for approval")
    return run_id


async def inbox_pages(http, headers, page_size: int = PAGE_SIZE) -> list[list[dict]]:
    """Every page of the caller's inbox, following next_page_token to the end."""
    pages, token = [], None
    while True:
        params = {"page_size": page_size, **({"next_page_token": token} if token else {})}
        response = await http.get("/v1/approvals", params=params, headers=headers)
        assert response.status_code == 200, response.text
        pages.append(response.json()["approvals"])
        token = response.json()["next_page_token"]
        if token is None:
            return pages


async def inbox_once_visible(http, headers, expected: set[tuple[str, str]]) -> list[list[dict]]:
    """The inbox's pages once visibility holds every expected (run id, approval key), and no more."""

    async def complete() -> list[list[dict]] | None:
        pages = await inbox_pages(http, headers)
        return pages if {(i["run_id"], i["approval_key"]) for p in pages for i in p} == expected else None

    return await eventually(complete, f"exactly {len(expected)} approvals in the inbox")


async def test_inbox_pages_are_full_and_exact_and_never_hold_what_the_caller_may_not_decide(http, auth):
    alice = auth(sub="alice", roles=("requester", "approver"))
    bob = auth(sub="bob", roles=("approver",))

    async def voted_by_bob() -> str:
        run_id = await start_waiting_run(http, alice, quorum=2, voters=3)
        assert (await decide(http, bob, run_id)).json()["outcome"] == "pending"
        return run_id

    refusals = {
        "his own request": lambda: start_waiting_run(http, auth(sub="bob", roles=("requester", "approver"))),
        "not his role": lambda: start_waiting_run(http, alice, roles=["compliance_lead"]),
        "not his group": lambda: start_waiting_run(http, alice, group="kyc-team"),
        "already voted": voted_by_bob,
        "another tenant": lambda: start_waiting_run(
            http, auth(sub="olga", roles=("requester",), tenant=f"o-{uuid.uuid4().hex[:8]}")),
    }
    decidable, undecidable = [], {}
    # Interleaved, so that every page of the tenant's waiting runs holds some bob may not decide.
    for why, start_refused in refusals.items():
        decidable.append(await start_waiting_run(http, alice))
        undecidable[why] = await start_refused()
    decidable += [await start_waiting_run(http, alice), await start_waiting_run(http, alice)]

    pages = await inbox_once_visible(http, bob, {(run_id, "review") for run_id in decidable})
    listed = [item["run_id"] for page in pages for item in page]
    assert len(listed) == len(set(listed)) == len(decidable) == 7
    assert [len(page) for page in pages] == [PAGE_SIZE, PAGE_SIZE, 1]
    assert not set(listed) & set(undecidable.values())

    # The runs bob may not decide are waiting for others, who find them.
    lead = auth(sub="lena", roles=("compliance_lead",))
    assert (undecidable["not his role"], "review") in {(i["run_id"], i["approval_key"])
                                                        for p in await inbox_pages(http, lead) for i in p}
    member = auth(sub="erin", roles=("approver",), groups=("kyc-team",))
    await inbox_once_visible(http, member, {(run_id, "review") for run_id in
                                            [*decidable, undecidable["his own request"], undecidable["not his group"],
                                             undecidable["already voted"]]})


async def replays_its_own_history(client: Client, run_id: str) -> None:
    """The patched path (inbox attributes, withdrawal on cancel) is deterministic: the run replays."""
    replayer = Replayer(workflows=[TestApprovalWorkflow], data_converter=TEST_DATA_CONVERTER,
                        workflow_runner=sandbox_runner(), interceptors=[*test_interceptors(), AuditInterceptor()])
    await replayer.replay_workflow(await client.get_workflow_handle(run_id).fetch_history())


async def test_decided_approval_leaves_the_inbox_and_clears_its_search_attributes(http, auth, client):
    alice = auth(sub="alice", roles=("requester", "approver"))
    run_id = await start_waiting_run(http, alice, quorum=2, voters=2)
    bob, carol = auth(sub="bob", roles=("approver",)), auth(sub="carol", roles=("approver",))
    await inbox_once_visible(http, carol, {(run_id, "review")})

    await decide(http, bob, run_id)
    attributes = (await client.get_workflow_handle(run_id).describe()).typed_search_attributes
    assert attributes.get(sa.APPROVAL_DECIDERS) == ["approver"]
    assert attributes.get(sa.APPROVAL_EXCLUDED) == ["alice", "bob"]

    await decide(http, carol, run_id)
    await inbox_once_visible(http, carol, set())
    attributes = (await client.get_workflow_handle(run_id).describe()).typed_search_attributes
    assert attributes.get(sa.APPROVAL_STATE) == "approved"
    assert attributes.get(sa.APPROVAL_DECIDERS) is None and attributes.get(sa.APPROVAL_EXCLUDED) is None
    await wait_for_run(http, run_id, alice)
    await replays_its_own_history(client, run_id)


async def test_group_names_that_a_query_would_have_to_quote_still_match(http, auth):
    alice = auth(sub="alice", roles=("requester", "approver"))
    run_id = await start_waiting_run(http, alice, group="O'Brien's team \\ EMEA")
    member = auth(sub="erin", roles=("approver",), groups=("O'Brien's team \\ EMEA",))
    await inbox_once_visible(http, member, {(run_id, "review")})
    assert await inbox_pages(http, auth(sub="bob", roles=("approver",), groups=("O'Brien",))) == [[]]


# --- runs whose attributes are set by hand: several approvals at once, and runs from before -----

def pending_state(key: str, tenant: str, voters: tuple[str, ...] = ()) -> ApprovalState:
    now = datetime.now(timezone.utc)
    receipts = [ApprovalReceipt(run_id="r", approval_key=key, approver=sub, roles=["approver"], tenant=tenant,
                                decision="approve", comment="", decided_at=now, shown_sha256="0" * 64,
                                update_id=f"u-{sub}", outcome="pending") for sub in voters]
    return ApprovalState(key=key, title=f"Approval {key}", summary="s", status="pending", roles=["approver"],
                         group=None, quorum=len(voters) + 1, voters=len(voters) + 1, shown={}, shown_sha256="0" * 64,
                         requested_by="alice", tenant=tenant, requested_at=now, waiting_since=now, receipts=receipts)


async def start_idle_run(client: Client, tenant: str, states: list[ApprovalState], *, attributes: bool = True) -> str:
    """A run that waits on a task queue nobody polls, with the memo and search attributes a
    waiting approval run publishes (or, attributes=False, those of a run from before the inbox ones)."""
    pairs = [*sa.for_new_run("test-approval", tenant, "alice"), SearchAttributePair(sa.APPROVAL_STATE, "pending")]
    if attributes:
        deciders, excluded = inbox_attributes(states)
        pairs += [SearchAttributePair(sa.APPROVAL_DECIDERS, deciders),
                  SearchAttributePair(sa.APPROVAL_EXCLUDED, excluded)]
    handle = await client.start_workflow(
        "test-approval", id=f"idle-{uuid.uuid4()}", task_queue=f"nobody-{uuid.uuid4()}",
        memo={"tenant": tenant, "requested_by": "alice", MEMO_KEY: [s.model_dump(mode="json") for s in states]},
        search_attributes=TypedSearchAttributes(pairs))
    return handle.id


async def test_voter_still_finds_the_other_approval_pending_on_the_same_run(http, auth, client, tenant):
    one_left = await start_idle_run(client, tenant, [pending_state("first", tenant, voters=("bob",)),
                                                     pending_state("second", tenant)])
    all_voted = await start_idle_run(client, tenant, [pending_state("first", tenant, voters=("bob",)),
                                                      pending_state("second", tenant, voters=("bob",))])
    try:
        await inbox_once_visible(http, auth(sub="bob", roles=("approver",)), {(one_left, "second")})
        await inbox_once_visible(http, auth(sub="carol", roles=("approver",)),
                                 {(one_left, "first"), (one_left, "second"), (all_voted, "first"),
                                  (all_voted, "second")})
        await inbox_once_visible(http, auth(sub="alice", roles=("approver",)), set())
    finally:
        for run_id in (one_left, all_voted):
            await client.get_workflow_handle(run_id).terminate("test over")


async def test_run_waiting_since_before_the_inbox_attributes_is_judged_on_its_memo(http, auth, client, tenant):
    run_id = await start_idle_run(client, tenant, [pending_state("review", tenant)], attributes=False)
    try:
        await inbox_once_visible(http, auth(sub="bob", roles=("approver",)), {(run_id, "review")})
        assert await inbox_pages(http, auth(sub="lena", roles=("compliance_lead",))) == [[]]
    finally:
        await client.get_workflow_handle(run_id).terminate("test over")


async def test_cancelled_run_withdraws_its_approval_and_leaves_the_inbox(http, auth, client):
    run_id = await start_waiting_run(http, auth(sub="alice", roles=("requester", "approver")))
    bob = auth(sub="bob", roles=("approver",))
    await inbox_once_visible(http, bob, {(run_id, "review")})

    assert (await http.post(f"/v1/runs/{run_id}/cancel", headers=auth())).status_code == 202
    run = await wait_for_run(http, run_id, auth())
    assert run["status"] == "cancelled"
    (state,) = run["approvals"]
    assert (state["status"], state["reason"]) == ("withdrawn", "the run was cancelled")
    attributes = (await client.get_workflow_handle(run_id).describe()).typed_search_attributes
    assert attributes.get(sa.APPROVAL_STATE) == "withdrawn" and attributes.get(sa.APPROVAL_DECIDERS) is None
    await inbox_once_visible(http, bob, set())
    await replays_its_own_history(client, run_id)

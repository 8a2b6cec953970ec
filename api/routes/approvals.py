"""Deciding approvals, and the approver's inbox.

The API only carries the decision: the caller's verified principal travels in a signed Temporal
header (steward/identity_headers.py), and the workflow's update validator decides whether this
person may decide. Its refusals come back as 403 (who you are) or 409 (the state of the run).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import ClientDep, PageTokensDep, require
from api.errors import ApiError, ErrorResponse
from api.paging import fetch_page
from api.run_records import describe_for_tenant, is_closed, run_link
from api.updates import execute_verified_update
from steward import search_attributes as sa
from steward.identity import Principal
from workflows.approvals import (
    ALREADY_VOTED,
    DECIDE_UPDATE,
    FORBIDDEN_TYPES,
    NOT_PENDING,
    MEMO_KEY,
    ApprovalReceipt,
    ApprovalState,
    DecisionInput,
)

router = APIRouter(tags=["approvals"])

MAX_PAGE_SIZE = 100
_ERRORS = {code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422)}

# Route-level: may this caller decide approvals at all. Whether they may decide *this* one (its
# roles, group, separation of duties) is the workflow's update validator's call.
Decider = Annotated[Principal, Depends(require("approvals:decide"))]


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"]
    comment: str = Field("", max_length=2000)
    approval_key: str | None = Field(None, description="Needed only when a run has several approvals pending.")


class InboxLinks(BaseModel):
    run: str
    decide: str


class InboxItem(BaseModel):
    run_id: str
    workflow: str
    approval_key: str
    title: str
    summary: str
    requested_by: str
    waiting_since: datetime
    requested_at: datetime
    roles: list[str]
    group: str | None
    quorum: int
    approvals: int
    shown: dict[str, Any]
    shown_sha256: str
    links: InboxLinks


class Inbox(BaseModel):
    approvals: list[InboxItem]
    next_page_token: str | None = Field(
        None, description="Set while more runs wait for the caller. `page_size` counts runs: a run with several "
                          "approvals the caller may decide gives an item for each."
    )


@router.post("/v1/runs/{run_id}/approvals", response_model=ApprovalReceipt, responses=_ERRORS)
async def decide(run_id: str, body: DecisionRequest, principal: Decider, client: ClientDep) -> ApprovalReceipt:
    description = await describe_for_tenant(client, run_id, principal.tenant)
    nothing_pending = ApiError(409, "not_pending", f"run {run_id!r} is not waiting for a decision")
    if is_closed(description):
        raise nothing_pending
    # A workflow without approvals has no decide handler: for the caller, nothing is pending.
    return await execute_verified_update(
        client, description, principal, DECIDE_UPDATE, DecisionInput(**body.model_dump()), ApprovalReceipt,
        forbidden=FORBIDDEN_TYPES, conflicts={NOT_PENDING: "not_pending", ALREADY_VOTED: "already_voted"},
        closed=nothing_pending,
    )


def may_decide(principal: Principal, state: ApprovalState) -> bool:
    """The inbox shows what the validator would accept; the validator still has the last word.

    The visibility query already chose runs by these rules; this picks the approvals, within a
    run, that the caller may decide, and judges runs from before the inbox attributes."""
    return (
        state.status == "pending"
        and bool(set(principal.roles) & set(state.roles))
        and (state.group is None or state.group in principal.groups)
        and principal.sub != state.requested_by
        and all(r.approver != principal.sub for r in state.receipts)
    )


def inbox_query(principal: Principal, status: str) -> str:
    """Runs of the caller's tenant with an approval they may decide, so pages are full and tokens
    exact. Values are the token's tenant and subject (checked by their patterns) and tickets
    (steward/search_attributes.py), so quoting cannot be escaped."""
    # Runs waiting since before ApprovalDeciders existed never get it (they replay the old code):
    # they are listed by state alone and judged on their memo, and may shorten a page until decided.
    from_before = f"{sa.APPROVAL_DECIDERS.name} IS NULL"
    return (f"{sa.TENANT.name} = '{principal.tenant}' AND ExecutionStatus = 'Running'"
            f" AND {sa.APPROVAL_STATE.name} = '{status}'"
            f" AND ({sa.inbox_filter(principal.sub, principal.roles, principal.groups)} OR {from_before})")


@router.get("/v1/approvals", response_model=Inbox, responses=_ERRORS)
async def inbox(
    principal: Decider,
    client: ClientDep,
    page_tokens: PageTokensDep,
    status: Literal["pending"] = "pending",
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20,
    next_page_token: str | None = None,
) -> Inbox:
    runs, token = await fetch_page(client, page_tokens, inbox_query(principal, status), page_size, next_page_token)
    items = []
    for execution in runs:
        memo = await execution.memo()
        for raw in memo.get(MEMO_KEY) or ():
            state = ApprovalState.model_validate(raw)
            if not may_decide(principal, state):
                continue
            items.append(InboxItem(
                run_id=execution.id, workflow=execution.workflow_type, approval_key=state.key, title=state.title,
                summary=state.summary, requested_by=state.requested_by, waiting_since=state.waiting_since,
                requested_at=state.requested_at, roles=state.roles, group=state.group, quorum=state.quorum,
                approvals=state.tally()[0], shown=state.shown, shown_sha256=state.shown_sha256,
                links=InboxLinks(run=run_link(execution.id).self, decide=f"/v1/runs/{execution.id}/approvals"),
            ))
    items.sort(key=lambda i: i.waiting_since)
    return Inbox(approvals=items, next_page_token=token)

"""Human approvals for any workflow: verified approvers, separation of duties, quorum, a timeout
ladder (workflows/ladder.py) and receipts.

A workflow inherits ApprovalsMixin and awaits `self.request_approval(ApprovalRequest(...))`.
Decisions arrive as the `steward.decide` update. Its validator refuses, before anything reaches
history, a caller without a verified identity (someone going around the API), of another tenant,
without the required role or group, who requested the run, or who already voted. docs/approvals.md
is the reference.

While an approval is pending, the run's ApprovalDeciders and ApprovalExcluded search attributes
say who may decide it, by the same rules as the validator, so the approver's inbox is a single
visibility query (steward/search_attributes.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator
from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ApplicationError

from steward import metric_names
from steward.search_attributes import (
    APPROVAL_DECIDERS,
    APPROVAL_EXCLUDED,
    APPROVAL_STATE,
    decider_ticket,
    excluded_subject,
    personal_ticket,
)

with workflow.unsafe.imports_passed_through():
    from activities.notify.webhook import WebhookTarget, deliver_webhook
    from steward.identity_headers import verified_caller

from workflows import metrics
from workflows.audit import AuditEvent, digest, event_id, record_soon
from workflows.ladder import climb
from workflows.notifications import notify

DECIDE_UPDATE = "steward.decide"
# Activities a workflow using approvals must register (reminders and escalations are announced).
APPROVAL_ACTIVITIES = (deliver_webhook,)
MEMO_KEY = "approvals"
KEY_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
# Runs since then publish who may decide as search attributes (the inbox's visibility query) and
# withdraw a pending approval when the run is cancelled. Runs from before replay without either;
# the inbox still finds them by their memo.
INBOX_PATCH = "steward-approval-inbox"

# ApplicationError types of refused decisions; the API maps FORBIDDEN_TYPES to 403, the others to 409.
UNVERIFIED = "ApprovalUnverified"
WRONG_TENANT = "ApprovalWrongTenant"
ROLE_MISSING = "ApprovalRoleMissing"
GROUP_MISSING = "ApprovalGroupMissing"
SEPARATION_OF_DUTIES = "ApprovalSeparationOfDuties"
NOT_PENDING = "ApprovalNotPending"
ALREADY_VOTED = "ApprovalAlreadyVoted"
FORBIDDEN_TYPES = (UNVERIFIED, WRONG_TENANT, ROLE_MISSING, GROUP_MISSING, SEPARATION_OF_DUTIES)

Decision = Literal["approve", "reject"]
Status = Literal["pending", "approved", "rejected", "expired", "withdrawn"]


class LadderStep(BaseModel):
    """What happens when nobody has decided `after` the request: remind, escalate, or decide."""

    after: timedelta = Field(gt=timedelta(0))
    action: Literal["remind", "escalate", "decide"]
    to_roles: list[str] | None = Field(None, description="escalate: the roles that may decide from now on.")
    decision: Decision | None = Field(None, description="decide: the decision taken.")
    reason: str | None = Field(None, max_length=500, description="decide: why, recorded on the run.")

    @model_validator(mode="after")
    def action_has_its_fields(self) -> LadderStep:
        if self.action == "escalate" and not self.to_roles:
            raise ValueError("an escalate step needs to_roles")
        if self.action == "decide" and (self.decision is None or not self.reason):
            raise ValueError("a decide step needs a decision and a reason")
        return self


class ApprovalRequest(BaseModel):
    key: str = Field("approval", pattern=KEY_PATTERN, description="Names this approval within the run.")
    title: str = Field(max_length=200)
    summary: str = Field(max_length=4000, description="What is being approved, in plain words.")
    roles: list[str] = Field(default_factory=lambda: ["approver"], min_length=1,
                             description="Any of these roles may decide.")
    group: str | None = Field(None, description="When set, deciders must also be in this group.")
    quorum: int = Field(1, ge=1, description="Approvals needed (N), from distinct people.")
    voters: int | None = Field(None, ge=1, description="Votes that may be cast (M); default N.")
    shown: dict[str, Any] = Field(default_factory=dict, description="The records the approver sees.")
    ladder: list[LadderStep] = Field(default_factory=list)

    @model_validator(mode="after")
    def quorum_fits(self) -> ApprovalRequest:
        if self.voters is not None and self.voters < self.quorum:
            raise ValueError(f"voters ({self.voters}) must be at least the quorum ({self.quorum})")
        if [s.after for s in self.ladder] != sorted(s.after for s in self.ladder):
            raise ValueError("ladder steps must be in order of `after`")
        return self


class DecisionInput(BaseModel):
    decision: Decision
    comment: str = Field("", max_length=2000)
    approval_key: str | None = Field(None, description="Which approval, when a run has several pending.")


class ApprovalReceipt(BaseModel):
    run_id: str
    approval_key: str
    approver: str
    roles: list[str]
    tenant: str
    decision: Decision
    comment: str
    decided_at: datetime
    shown_sha256: str = Field(description="SHA-256 of exactly what was shown: title, summary and records.")
    update_id: str
    outcome: Status = Field(description="The approval's status right after this vote.")


class ApprovalEvent(BaseModel):
    at: datetime
    kind: Literal["requested", "reminded", "escalated", "voted", "decided", "auto_decided", "withdrawn"]
    detail: str


class ApprovalState(BaseModel):
    key: str
    title: str
    summary: str
    status: Status
    roles: list[str]
    group: str | None
    quorum: int
    voters: int
    shown: dict[str, Any]
    shown_sha256: str
    requested_by: str
    tenant: str
    requested_at: datetime
    waiting_since: datetime = Field(description="Since the request, or the last escalation.")
    decided_by: list[str] = Field(default_factory=list, description="Approvers, or ['policy'] for the ladder.")
    reason: str | None = None
    auto_decision: Decision | None = Field(None, description="What the ladder decided, when it did.")
    receipts: list[ApprovalReceipt] = Field(default_factory=list)
    events: list[ApprovalEvent] = Field(default_factory=list)

    def tally(self) -> tuple[int, int]:
        approvals = sum(1 for r in self.receipts if r.decision == "approve")
        return approvals, len(self.receipts) - approvals


class ApprovalOutcome(BaseModel):
    key: str
    approved: bool
    status: Status
    decided_by: list[str]
    reason: str | None
    receipts: list[ApprovalReceipt]


def shown_digest(title: str, summary: str, shown: dict[str, Any]) -> str:
    canonical = json.dumps({"title": title, "summary": summary, "shown": shown}, sort_keys=True,
                           separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def inbox_attributes(pending: list[ApprovalState]) -> tuple[list[str], list[str]]:
    """ApprovalDeciders and ApprovalExcluded for the pending approvals: a caller may decide one
    exactly when they hold one of its tickets and are not excluded, or hold a personal ticket.

    The requester and everyone who voted are excluded from the generic tickets; whoever voted on
    some pending approvals but not on others gets personal tickets for those others. Ordered
    lists, not sets: the same state must give the same values on every worker."""
    marked = dict.fromkeys([s.requested_by for s in pending if s.requested_by]
                           + [r.approver for s in pending for r in s.receipts])
    generic: dict[str, None] = {}
    personal: dict[str, None] = {}
    for state in pending:
        tickets = [decider_ticket(role, state.group) for role in state.roles]
        generic.update(dict.fromkeys(tickets))
        for sub in marked:
            if sub != state.requested_by and all(r.approver != sub for r in state.receipts):
                personal.update(dict.fromkeys(personal_ticket(sub, t) for t in tickets))
    return [*generic, *personal], [excluded_subject(sub) for sub in marked]


def _audited_receipt(receipt: ApprovalReceipt) -> dict[str, Any]:
    """A receipt as the audit log keeps it: the comment is free text, so its digest stands for it."""
    return {**receipt.model_dump(mode="json", exclude={"comment"}), "comment_sha256": digest(receipt.comment)}


class ApprovalsMixin:
    """Gives a workflow `request_approval` and the `steward.decide` update."""

    @property
    def _approvals(self) -> dict[str, ApprovalState]:
        if not hasattr(self, "_steward_approvals"):
            self._steward_approvals: dict[str, ApprovalState] = {}
        return self._steward_approvals

    async def request_approval(self, request: ApprovalRequest) -> ApprovalOutcome:
        if request.key in self._approvals:
            raise ApplicationError(f"approval {request.key!r} was already requested in this run",
                                   type="ApprovalKeyReused", non_retryable=True)
        now = workflow.now()
        state = ApprovalState(
            key=request.key, title=request.title, summary=request.summary, status="pending",
            roles=list(request.roles), group=request.group, quorum=request.quorum,
            voters=request.voters or request.quorum, shown=request.shown,
            shown_sha256=shown_digest(request.title, request.summary, request.shown),
            requested_by=workflow.memo_value("requested_by", ""), tenant=workflow.memo_value("tenant", ""),
            requested_at=now, waiting_since=now,
            events=[ApprovalEvent(at=now, kind="requested", detail=f"{request.title}: {', '.join(request.roles)}")],
        )
        self._approvals[request.key] = state
        self._publish()

        def decided() -> bool:
            return state.status != "pending"

        def on_rung(step: LadderStep, _: int) -> None:
            self._climb(state, step)
            if not decided():
                self._announce(state, step)

        try:
            if not await climb(request.ladder, after=lambda step: step.after, started_at=state.requested_at,
                               done=decided, on_rung=on_rung):
                await workflow.wait_condition(decided)
        except asyncio.CancelledError:
            # A cancelled run may go on compensating for a while: it must leave the inbox, and
            # its validator must refuse votes nobody will wait for.
            if workflow.patched(INBOX_PATCH):
                self.withdraw_approval(request.key, "the run was cancelled")
            raise
        self._publish()
        approved = state.status == "approved" or (state.status == "expired" and state.auto_decision == "approve")
        return ApprovalOutcome(key=state.key, approved=approved, status=state.status, decided_by=state.decided_by,
                               reason=state.reason, receipts=state.receipts)

    def withdraw_approval(self, key: str, reason: str) -> None:
        """End a pending approval nobody needs any more (the incident it was for is resolved):
        `request_approval` returns, not approved, and nobody can vote on it from now on."""
        state = self._approvals.get(key)
        if state is None or state.status != "pending":
            return
        state.status, state.reason = "withdrawn", reason
        state.events.append(ApprovalEvent(at=workflow.now(), kind="withdrawn", detail=reason))
        self._publish()

    def _climb(self, state: ApprovalState, step: LadderStep) -> None:
        now = workflow.now()
        if step.action == "remind":
            state.events.append(ApprovalEvent(at=now, kind="reminded",
                                              detail=f"still waiting for {', '.join(state.roles)}"))
            workflow.logger.info("approval reminder", extra={"approval": state.key, "roles": state.roles})
        elif step.action == "escalate":
            assert step.to_roles is not None
            state.events.append(ApprovalEvent(at=now, kind="escalated",
                                              detail=f"from {', '.join(state.roles)} to {', '.join(step.to_roles)}"))
            state.roles, state.waiting_since = list(step.to_roles), now
            workflow.logger.info("approval escalated", extra={"approval": state.key, "roles": state.roles})
        else:
            state.status, state.decided_by, state.reason = "expired", ["policy"], step.reason
            state.auto_decision = step.decision
            state.events.append(ApprovalEvent(at=now, kind="auto_decided", detail=f"{step.decision}: {step.reason}"))
            workflow.logger.info("approval decided by the ladder", extra={"approval": state.key})
        self._publish()

    def _announce(self, state: ApprovalState, step: LadderStep) -> None:
        """Tell the organisation a reminder or escalation happened, on the platform webhook
        (STEWARD_NOTIFY_WEBHOOK_URL), from where it reaches chat or e-mail. It runs beside the
        ladder, never in its way: an unreachable receiver must not delay the next rung."""
        event = {"remind": "approval.reminder", "escalate": "approval.escalated"}[step.action]
        rung = len([e for e in state.events if e.kind in ("reminded", "escalated")])
        data = {"run_id": workflow.info().workflow_id, "approval_key": state.key, "title": state.title,
                "roles": state.roles, "waiting_since": state.waiting_since.isoformat(),
                "requested_at": state.requested_at.isoformat()}
        if not hasattr(self, "_steward_announcements"):
            self._steward_announcements: list[asyncio.Task[Any]] = []
        self._steward_announcements.append(asyncio.create_task(
            notify([WebhookTarget(kind="platform")], event, data, step=f"approval-{state.key}-{rung}")
        ))

    # --- the decision update ------------------------------------------------------------------

    def _target(self, approval_key: str | None) -> ApprovalState:
        pending = [s for s in self._approvals.values() if s.status == "pending"]
        if approval_key is not None:
            pending = [s for s in pending if s.key == approval_key]
        if not pending:
            raise ApplicationError("nothing is waiting for a decision on this run", type=NOT_PENDING)
        if len(pending) > 1:
            raise ApplicationError("several approvals are pending: name one with approval_key", type=NOT_PENDING)
        return pending[0]

    @workflow.update(name=DECIDE_UPDATE)
    async def steward_decide(self, request: DecisionInput) -> ApprovalReceipt:
        caller = verified_caller()
        assert caller is not None  # the validator accepted this update
        state = self._target(request.approval_key)
        info = workflow.info()
        receipt = ApprovalReceipt(
            run_id=info.workflow_id, approval_key=state.key, approver=caller.sub, roles=list(caller.roles),
            tenant=caller.tenant, decision=request.decision, comment=request.comment,
            decided_at=workflow.now(), shown_sha256=state.shown_sha256,
            update_id=workflow.current_update_info().id, outcome="pending",  # type: ignore[union-attr]
        )
        state.receipts.append(receipt)
        state.events.append(ApprovalEvent(at=receipt.decided_at, kind="voted", detail=f"{caller.sub}: {request.decision}"))
        approvals, rejections = state.tally()
        if approvals >= state.quorum:
            state.status = "approved"
        elif rejections > state.voters - state.quorum:
            state.status = "rejected"
        if state.status != "pending":
            deciding = "approve" if state.status == "approved" else "reject"
            state.decided_by = [r.approver for r in state.receipts if r.decision == deciding]
            state.events.append(ApprovalEvent(at=receipt.decided_at, kind="decided",
                                              detail=f"{state.status} by {', '.join(state.decided_by)}"))
        receipt.outcome = state.status
        self._publish()
        return receipt

    @steward_decide.validator
    def _validate_steward_decide(self, request: DecisionInput) -> None:
        caller = verified_caller()
        if caller is None:
            raise ApplicationError("the decision carries no verified identity; decide through the Steward API",
                                   type=UNVERIFIED)
        state = self._target(request.approval_key)
        if caller.tenant != state.tenant:
            raise ApplicationError("this run belongs to another tenant", type=WRONG_TENANT)
        if not set(caller.roles) & set(state.roles):
            raise ApplicationError(f"deciding needs one of the roles: {', '.join(state.roles)}", type=ROLE_MISSING)
        if state.group is not None and state.group not in caller.groups:
            raise ApplicationError(f"deciding needs membership of the group {state.group!r}", type=GROUP_MISSING)
        if caller.sub == state.requested_by:
            raise ApplicationError("separation of duties: you requested this run, so someone else must decide",
                                   type=SEPARATION_OF_DUTIES)
        if any(r.approver == caller.sub for r in state.receipts):
            raise ApplicationError("you have already voted on this approval", type=ALREADY_VOTED)

    # --- what operators and the API see -------------------------------------------------------

    def _measure_decisions(self) -> None:
        """How long each approval waited for its decision (a person's, or the ladder's), once."""
        if not hasattr(self, "_steward_measured"):
            self._steward_measured: set[str] = set()
        for state in self._approvals.values():
            if state.status != "pending" and state.key not in self._steward_measured:
                self._steward_measured.add(state.key)
                metrics.observe_duration(
                    metric_names.APPROVAL_DECISION_SECONDS, "Time from an approval's request to its decision.",
                    workflow.now() - state.requested_at, workflow=workflow.info().workflow_type, outcome=state.status)

    def _audit_new_events(self) -> None:
        """Each approval event once in the audit log: requested, each vote with its receipt,
        escalated, decided, decided by the ladder, withdrawn. Digests stand for free text."""
        if not hasattr(self, "_steward_audited"):
            self._steward_audited: dict[str, int] = {}
        for state in self._approvals.values():
            done = self._steward_audited.get(state.key, 0)
            votes = sum(1 for e in state.events[:done] if e.kind == "voted")
            events = []
            for number, event in enumerate(state.events[done:], start=done):
                data: dict[str, Any] = {"approval": state.key, "roles": state.roles, "quorum": state.quorum,
                                        "shown_sha256": state.shown_sha256, "detail_sha256": digest(event.detail)}
                if event.kind == "voted":
                    receipt = state.receipts[votes]
                    votes += 1
                    data["receipt"] = _audited_receipt(receipt)
                    data["receipt_sha256"] = digest(data["receipt"])
                elif event.kind in ("decided", "auto_decided"):
                    data |= {"status": state.status, "decided_by": state.decided_by,
                             "auto_decision": state.auto_decision, "reason": state.reason,
                             "receipt_sha256s": [digest(_audited_receipt(r)) for r in state.receipts]}
                events.append(AuditEvent(event_id=event_id("approval", state.key, str(number)),
                                         kind=f"approval.{event.kind}", data=data))
            self._steward_audited[state.key] = len(state.events)
            record_soon(*events)

    def _publish(self) -> None:
        self._audit_new_events()
        self._measure_decisions()
        states = list(self._approvals.values())
        pending = [s for s in states if s.status == "pending"]
        overall = "pending" if pending else states[-1].status
        attributes: list[SearchAttributeUpdate[Any]] = [APPROVAL_STATE.value_set(overall)]
        if workflow.patched(INBOX_PATCH):
            deciders, excluded = inbox_attributes(pending)
            # Unset, not emptied, once nothing is pending: the run leaves the inbox.
            attributes += [APPROVAL_DECIDERS.value_set(deciders) if deciders else APPROVAL_DECIDERS.value_unset(),
                           APPROVAL_EXCLUDED.value_set(excluded) if excluded else APPROVAL_EXCLUDED.value_unset()]
        workflow.upsert_search_attributes(attributes)
        workflow.upsert_memo({MEMO_KEY: [s.model_dump(mode="json") for s in states]})
        if pending:
            s = pending[0]
            approvals, _ = s.tally()
            workflow.set_current_details(
                f"Waiting for approval '{s.title}' by {' or '.join(s.roles)} "
                f"({approvals} of {s.quorum} approvals) since {s.waiting_since:%Y-%m-%d %H:%M} UTC"
            )
        else:
            last = states[-1]
            who = ", ".join(last.decided_by) or "nobody"
            workflow.set_current_details(f"Approval '{last.title}': {last.status} by {who}")


"""customer-onboarding: a new business customer provisioned across the systems a company runs.

CRM account → compliance review of the contact (a child `compliance-documentation` run in the
same tenant, approved through the API like any other) → identity user (SCIM) → billing
subscription (Stripe) → welcome e-mail with a one-time activation link → the contact activates →
account active. Which system sits behind each step is the settings' choice
(activities/connectors/); the embedded default needs none.

When a step fails for good, the review rejects, the link expires unused or the run is cancelled,
everything already done is undone in reverse (workflows/saga.py), and the run ends failed (or
cancelled) saying why and what was undone. docs/workflows/customer-onboarding.md describes it.
"""

from __future__ import annotations

import asyncio
import hmac
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    FailureError,
    is_cancelled_exception,
)
from temporalio.workflow import ParentClosePolicy

from steward.search_attributes import for_new_run
from workflows import compliance_documentation as compliance
from workflows.saga import CompensationRecord, Saga, describe_compensations
from workflows.spec import WorkflowSpec
from workflows.stage import enter_stage

with workflow.unsafe.imports_passed_through():
    from activities.compliance.models import Applicant, ComplianceInput
    from activities.connectors import errors as connector_errors
    from activities.connectors.models import (
        AccountRecord,
        AccountRequest,
        ConnectorCall,
        Plan,
        SubscriptionRecord,
        SubscriptionRequest,
        UserRecord,
        UserRequest,
    )
    from activities.notify import email
    from activities.onboarding.models import (
        ActivateInput,
        ActivationRecord,
        OnboardingInput,
        WelcomeRequest,
        WelcomeSent,
    )
    from activities.onboarding.provisioning import (
        PROVISIONING_ACTIVITIES,
        activate_crm_account,
        archive_crm_account,
        cancel_billing_subscription,
        create_billing_subscription,
        create_crm_account,
        create_identity_user,
        deactivate_identity_user,
    )
    from activities.onboarding.welcome import send_welcome_email
    from steward.identity_headers import verified_caller

NAME = "customer-onboarding"
ACTIVATE_UPDATE = "steward.activate"
MEMO_KEY = "onboarding"
# The role the API gives the principal it acts as for an activation link: the token is the
# credential, and only the API, which saw it, may vouch for its digest.
ACTIVATION_ROLE = "activation-link"

# ApplicationError types: the run's own failures, and its refusal of an activation.
COMPLIANCE_REJECTED = "ComplianceRejected"
ACTIVATION_EXPIRED = "ActivationExpired"
PROVISIONING_FAILED = "ProvisioningFailed"
ACTIVATION_INVALID = "ActivationInvalid"

# One request to a system each; connectors never retry themselves, so Temporal does: a few
# minutes of backoff ride out a restart or a rate limit, and a refusal retrying cannot fix
# (ConnectorRejected, ConnectorMisconfigured) fails the step at once so the saga can undo.
# A Stripe create is up to four requests (look up, customer, look up, subscription), each allowed
# STEWARD_CONNECTOR_TIMEOUT_S (20 s by default): the step allows them all.
PROVISION_TIMEOUT = timedelta(minutes=2)
PROVISION_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                              maximum_interval=timedelta(minutes=1), maximum_attempts=10,
                              non_retryable_error_types=list(connector_errors.NON_RETRYABLE))
# An SMTP relay that is down for a while is retried for about a quarter of an hour; one that
# refuses the address or our login fails the step.
WELCOME_TIMEOUT = timedelta(minutes=1)
WELCOME_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), backoff_coefficient=2.0,
                            maximum_interval=timedelta(minutes=2), maximum_attempts=10,
                            non_retryable_error_types=list(email.NON_RETRYABLE))

State = Literal["provisioning", "in_review", "waiting_for_activation", "active", "undoing", "failed", "cancelled"]
Step = Literal["crm_account", "compliance_review", "identity_user", "billing_subscription", "welcome_email",
               "activation", "account_active"]


class StepRecord(BaseModel):
    step: Step
    status: Literal["running", "waiting", "done", "failed"]
    at: datetime
    detail: str = ""


class ComplianceOutcome(BaseModel):
    run_id: str = Field(description="The child compliance-documentation run: GET /v1/runs/{run_id}.")
    decision: Literal["approved", "rejected"] | None = None
    decided_by: str | None = None
    comment: str | None = None


class OnboardingView(BaseModel):
    """What run details show while the onboarding runs and after (memo key `onboarding`)."""

    company_name: str
    plan: Plan
    state: State
    steps: list[StepRecord] = Field(default_factory=list)
    compliance: ComplianceOutcome | None = None
    activation_expires_at: datetime | None = None
    activated_at: datetime | None = None
    reason: str | None = Field(None, description="Why the onboarding did not finish.")
    compensations: list[CompensationRecord] = Field(default_factory=list, description="What was undone, in order.")


class OnboardingResult(BaseModel):
    company_name: str
    plan: Plan
    account: AccountRecord
    user: UserRecord
    subscription: SubscriptionRecord
    compliance: ComplianceOutcome
    activated_at: datetime


class _Stop(Exception):
    """A reason the onboarding cannot finish, with the ApplicationError type the run fails with."""

    def __init__(self, reason: str, error_type: str) -> None:
        super().__init__(reason)
        self.reason, self.error_type = reason, error_type


@workflow.defn(name=NAME)
class CustomerOnboardingWorkflow:
    def __init__(self) -> None:
        self.view: OnboardingView | None = None
        self.saga = Saga(on_record=self._compensated)
        self.expected_digest: str | None = None
        self.expires_at: datetime | None = None
        self.activation: ActivationRecord | None = None

    @workflow.run
    async def run(self, request: OnboardingInput) -> OnboardingResult:
        self.view = OnboardingView(company_name=request.customer.company_name, plan=request.customer.plan,
                                   state="provisioning")
        try:
            result = await self._onboard(request)
        except (asyncio.CancelledError, ActivityError, ChildWorkflowError) as error:
            # Only a cancellation gets here (a step's failure becomes a _Stop); it may arrive as
            # the cancelled step's error. Undone, the run ends cancelled.
            if not is_cancelled_exception(error):
                raise
            await self._undo("the onboarding was cancelled", "cancelled")
            raise
        except _Stop as stop:
            records = await self._undo(stop.reason, "failed")
            raise ApplicationError(f"{stop.reason}; {describe_compensations(records)}",
                                   {"compensations": [r.model_dump(mode="json") for r in records]},
                                   type=stop.error_type, non_retryable=True) from None
        enter_stage("done", f"Active: {request.customer.company_name} ({request.customer.plan})")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result

    async def _onboard(self, request: OnboardingInput) -> OnboardingResult:
        customer, contact = request.customer, request.contact

        enter_stage("crm", "Creating the CRM account")
        self.saga.on_failure_undo("CRM account", archive_crm_account, self._call("crm-archive"))
        account: AccountRecord = await self._provision("crm_account", create_crm_account, AccountRequest(
            **self._call("crm-account").model_dump(), company_name=customer.company_name, plan=customer.plan,
            country=customer.country, contact_email=contact.email,
        ))
        self._step("crm_account", "done", f"account {account.account_id} ({account.system})")

        compliance_outcome = await self._review(request)

        enter_stage("identity", "Creating the contact's user")
        self.saga.on_failure_undo("identity user", deactivate_identity_user, self._call("identity-deactivate"))
        user: UserRecord = await self._provision("identity_user", create_identity_user, UserRequest(
            **self._call("identity-user").model_dump(), full_name=contact.full_name, email=contact.email,
        ))
        self._step("identity_user", "done", f"user {user.user_id} ({user.system})")

        enter_stage("billing", "Subscribing to the plan")
        subscribe = SubscriptionRequest(**self._call("billing-subscription").model_dump(),
                                        company_name=customer.company_name, email=contact.email, plan=customer.plan,
                                        country=customer.country)
        # The cancel gets the subscribe's own request: its email lets a billing system find the customer.
        self.saga.on_failure_undo("billing subscription", cancel_billing_subscription,
                                  subscribe.model_copy(update=self._call("billing-cancel").model_dump()))
        subscription: SubscriptionRecord = await self._provision("billing_subscription", create_billing_subscription,
                                                                 subscribe)
        self._step("billing_subscription", "done",
                   f"subscription {subscription.subscription_id} ({subscription.system}, {subscription.status})")

        await self._welcome(request)
        await self._await_activation(request.activation_ttl)

        enter_stage("activate", "Marking the account active")
        account = await self._provision("account_active", activate_crm_account, self._call("crm-activate"))
        self._step("account_active", "done", f"account {account.account_id} is {account.status}")
        self._set_state("active")
        assert self.activation is not None
        return OnboardingResult(company_name=customer.company_name, plan=customer.plan, account=account, user=user,
                                subscription=subscription, compliance=compliance_outcome,
                                activated_at=self.activation.activated_at)

    # --- steps --------------------------------------------------------------------------------

    def _call(self, step: str) -> ConnectorCall:
        """Each call its own key: a system that remembers keys refuses one reused for another request."""
        run_id = workflow.info().workflow_id
        return ConnectorCall(onboarding_id=run_id, idempotency_key=f"{run_id}:{step}")

    async def _provision(self, step: Step, activity, argument: BaseModel):
        self._step(step, "running")
        try:
            return await workflow.execute_activity(activity, argument, start_to_close_timeout=PROVISION_TIMEOUT,
                                                   retry_policy=PROVISION_RETRY)
        except ActivityError as error:
            if is_cancelled_exception(error):
                raise
            reason = f"{step.replace('_', ' ')} failed: {_message(error)}"
            self._step(step, "failed", _message(error))
            raise _Stop(reason, PROVISIONING_FAILED) from None

    async def _review(self, request: OnboardingInput) -> ComplianceOutcome:
        enter_stage("review", "Compliance review of the contact")
        self._set_state("in_review")
        contact, customer = request.contact, request.customer
        review = ComplianceInput(
            applicant=Applicant(full_name=contact.full_name, date_of_birth=contact.date_of_birth,
                                country=customer.country, document_id=contact.document_id, pep=contact.pep,
                                occupation=contact.occupation, annual_income=contact.annual_income,
                                source_of_funds=contact.source_of_funds),
            documents=request.documents,
        )
        tenant = workflow.memo_value("tenant", "")
        requested_by = workflow.memo_value("requested_by", "") or NAME
        child_id = f"{workflow.info().workflow_id}-compliance"
        assert self.view is not None
        self.view.compliance = ComplianceOutcome(run_id=child_id)
        self._step("compliance_review", "running", f"run {child_id}")
        spec = compliance.SPEC
        try:
            result: compliance.ComplianceResult = await workflow.execute_child_workflow(
                spec.name, review, id=child_id, result_type=spec.output_model, task_queue=spec.task_queue,
                execution_timeout=spec.execution_timeout,
                # Ending the onboarding (terminated, timed out) cancels a review still running.
                parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
                # The same tenant and requester: the review is listed, followed and approved
                # through the API like any run the tenant started.
                memo={"requested_by": requested_by, "tenant": tenant, "callback_url": None,
                      "parent_run": workflow.info().workflow_id},
                search_attributes=for_new_run(spec.name, tenant, requested_by),
                static_summary=spec.static_summary(review),
            )
        except ChildWorkflowError as error:
            if is_cancelled_exception(error):
                raise
            self._step("compliance_review", "failed", _message(error))
            raise _Stop(f"compliance review did not finish: {_message(error)}", COMPLIANCE_REJECTED) from None
        outcome = ComplianceOutcome(run_id=child_id, decision=result.decision, decided_by=result.decided_by,
                                    comment=result.comment or result.reason)
        self.view.compliance = outcome
        if result.decision != "approved":
            self._step("compliance_review", "failed", f"rejected by {result.decided_by}")
            raise _Stop(f"compliance review rejected: {outcome.comment or 'no comment'}", COMPLIANCE_REJECTED)
        self._step("compliance_review", "done", f"approved by {result.decided_by}")
        self._set_state("provisioning")
        return outcome

    async def _welcome(self, request: OnboardingInput) -> None:
        enter_stage("welcome", "Sending the welcome e-mail")
        self._step("welcome_email", "running")
        run_id = workflow.info().workflow_id
        self.expires_at = workflow.now() + request.activation_ttl
        try:
            sent: WelcomeSent = await workflow.execute_activity(send_welcome_email, WelcomeRequest(
                onboarding_id=run_id, message_id=f"{run_id}:welcome", to=request.contact.email,
                contact_name=request.contact.full_name, company_name=request.customer.company_name,
                plan=request.customer.plan, expires_at=self.expires_at, occurred_at=workflow.now(),
            ), start_to_close_timeout=WELCOME_TIMEOUT, retry_policy=WELCOME_RETRY)
        except ActivityError as error:
            if is_cancelled_exception(error):
                raise
            self._step("welcome_email", "failed", _message(error))
            raise _Stop(f"welcome e-mail failed: {_message(error)}", PROVISIONING_FAILED) from None
        self.expected_digest = sent.token_sha256
        self._step("welcome_email", "done", f"sent ({sent.transport})")

    async def _await_activation(self, ttl: timedelta) -> None:
        enter_stage("activation", "Waiting for the contact to activate")
        self._set_state("waiting_for_activation")
        assert self.view is not None
        self.view.activation_expires_at = self.expires_at
        self._step("activation", "waiting", f"until {self.expires_at:%Y-%m-%d %H:%M} UTC")
        try:
            await workflow.wait_condition(lambda: self.activation is not None, timeout=ttl)
        except asyncio.TimeoutError:
            self.expected_digest = None
            self._step("activation", "failed", "the link expired unused")
            raise _Stop(f"the activation link expired unused after {_duration(ttl)}", ACTIVATION_EXPIRED) from None
        assert self.activation is not None
        self.view.activated_at = self.activation.activated_at
        self._step("activation", "done", "activated through the link")
        self._set_state("provisioning")

    async def _undo(self, reason: str, final: State) -> list[CompensationRecord]:
        assert self.view is not None
        self.view.reason = reason
        self.expected_digest = None  # a link still out there no longer works
        self._set_state("undoing")
        enter_stage("undo", f"Undoing: {reason}")
        records = await self.saga.compensate()
        self._set_state(final)
        enter_stage(final, f"{final.capitalize()}: {reason}; {describe_compensations(records)}")
        return records

    # --- the activation link ------------------------------------------------------------------

    @workflow.update(name=ACTIVATE_UPDATE)
    def activate(self, request: ActivateInput) -> ActivationRecord:
        self.expected_digest = None  # once
        self.activation = ActivationRecord(activated_at=workflow.now())
        return self.activation

    @activate.validator
    def _validate_activate(self, request: ActivateInput) -> None:
        # One refusal for every reason (no link issued, used, expired, wrong token, not the API):
        # the API answers them all with the same 404, so a guess learns nothing.
        caller = verified_caller()
        valid = (
            caller is not None and ACTIVATION_ROLE in caller.roles
            and caller.tenant == workflow.memo_value("tenant", "")
            and self.expected_digest is not None and self.expires_at is not None and workflow.now() < self.expires_at
            and hmac.compare_digest(self.expected_digest, request.token_sha256)
        )
        if not valid:
            raise ApplicationError("this activation link is not valid", type=ACTIVATION_INVALID)

    # --- what run details and the Temporal UI show ----------------------------------------------

    def _step(self, step: Step, status: Literal["running", "waiting", "done", "failed"], detail: str = "") -> None:
        assert self.view is not None
        self.view.steps = [s for s in self.view.steps if s.step != step]
        self.view.steps.append(StepRecord(step=step, status=status, at=workflow.now(), detail=detail))
        self._show()

    def _set_state(self, state: State) -> None:
        assert self.view is not None
        self.view.state = state
        self._show()

    def _compensated(self, record: CompensationRecord) -> None:
        assert self.view is not None
        self.view.compensations.append(record)
        self._show()

    def _show(self) -> None:
        if self.view is not None:
            workflow.upsert_memo({MEMO_KEY: self.view.model_dump(mode="json")})


def _message(error: FailureError) -> str:
    """The innermost failure's message: what actually went wrong, not "activity task failed"."""
    cause: BaseException | None = error
    while isinstance(cause, FailureError) and cause.cause is not None:
        cause = cause.cause
    return cause.message if isinstance(cause, FailureError) else str(cause)


def _duration(span: timedelta) -> str:
    hours = int(span.total_seconds() // 3600)
    return f"{hours // 24} days" if hours >= 48 and hours % 24 == 0 else f"{hours} hours"


def _summary(request: OnboardingInput) -> str:
    # The company, not the contact: no personal data in the UI summary.
    return f"Onboarding: {request.customer.company_name} ({request.customer.plan}, {request.customer.country})"


SPEC = WorkflowSpec(
    name=NAME,
    description="Customer onboarding: CRM account, compliance review, identity user, billing subscription, "
                "welcome e-mail with a one-time activation link; undone in reverse when it cannot finish.",
    workflow=CustomerOnboardingWorkflow,
    input_model=OnboardingInput,
    output_model=OnboardingResult,
    activities=(*PROVISIONING_ACTIVITIES, send_welcome_email),
    summary=_summary,
    # No sample_input: an onboarding waits for its contact to activate, so it cannot run
    # unattended; tests/fixtures/record_histories.py drives one through.
)

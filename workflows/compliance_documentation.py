"""compliance-documentation: a KYC-style review a compliance officer can defend to a regulator.

extract → classify (LLM layer) → review (policy or a person) → report (PDF) → notify (signed
webhooks). Rules that hold whatever a model says: a politically exposed person, an injection
attempt, an invalid or low-confidence answer, or a policy violation always reach a person.
docs/workflows/compliance-documentation.md describes each step.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy

from steward.search_attributes import RISK_LEVEL
from workflows.artifacts import record_artifacts
from workflows.approvals import APPROVAL_ACTIVITIES, ApprovalRequest, ApprovalsMixin, LadderStep
from workflows.cpu_steps import execute_cpu_activity
from workflows.llm_steps import LlmLedger
from workflows.spec import WorkflowSpec
from workflows.stage import enter_stage

with workflow.unsafe.imports_passed_through():
    from activities.artifacts.store import ArtifactRef
    from activities.compliance.extract import ExtractedFacts, ExtractRequest, extract_applicant_facts
    from activities.compliance.models import ComplianceInput
    from activities.llm.activity import run_llm_task
    from activities.llm.models import LlmTaskRequest, LlmTaskResult, LlmUsage, UntrustedText
    from activities.notify.webhook import WebhookTarget, deliver_webhook
    from activities.reports.compliance_report import generate_compliance_report
    from activities.reports.models import ComplianceReportInput, ReportDecision, TimelineEntry

from workflows.notifications import NotificationRecord, notify

NAME = "compliance-documentation"
REVIEW_KEY = "compliance-review"
ESCALATION_ROLE = "compliance_lead"
TIMED_OUT_REASON = "approval timed out"

# Normalising a few documents is milliseconds of deterministic work with no side effect, so it
# runs as a local activity: in the worker running the workflow, with no activity task scheduled,
# matched and polled through the server, its result recorded as a marker with the workflow
# task. What that changes: EXTRACT_TIMEOUT bounds one attempt and EXTRACT_SCHEDULE_TIMEOUT all of
# them; retries happen in the worker (waits longer than a minute become durable timers); and if
# the worker dies mid-step the next worker runs the extraction again from the start, which is
# harmless because it is pure. Runs started before this change replay their regular activity.
EXTRACT_AS_LOCAL_ACTIVITY = "extract-as-local-activity"
EXTRACT_TIMEOUT = timedelta(seconds=30)
EXTRACT_SCHEDULE_TIMEOUT = timedelta(minutes=5)
EXTRACT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5)
# Typst renders a report in about 10 ms; the first report of a new data dir also prepares the
# fonts (about 7 s of CPU, once). The timeout counts only the work: a burst waits for a free
# process in the CPU task queue before it starts (workflows/cpu_steps.py).
REPORT_TIMEOUT = timedelta(minutes=1)
REPORT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=1),
                           maximum_attempts=10)


class ReportReference(BaseModel):
    name: str
    sha256: str


class ComplianceResult(BaseModel):
    decision: Literal["approved", "rejected"]
    risk_level: Literal["low", "medium", "high"]
    decided_by: str = Field(description='"policy", or the approver\'s sub.')
    comment: str | None = Field(None, description="The deciding approver's comment.")
    reason: str | None = Field(None, description='Why policy decided, e.g. "low risk, cleared by policy".')
    reasons: list[str]
    review_reasons: list[str] = Field(default_factory=list)
    report: ReportReference
    llm: LlmUsage
    notifications: list[NotificationRecord] = Field(default_factory=list)


def review_reasons_for(applicant_pep: bool, result: LlmTaskResult, threshold: float) -> list[str]:
    """Why a person must decide; empty when policy may clear the case. Holds whatever the model says."""
    reasons = list(result.review_reasons)  # injection attempts, invalid answers
    if applicant_pep:
        reasons.append("the applicant is a politically exposed person")
    answer = result.answer
    if answer is not None:
        if answer["confidence"] < threshold:
            reasons.append(f"classification confidence {answer['confidence']:.2f} is below {threshold:.2f}")
        if answer["decision"] == "review":
            reasons.append(f"the classification asks for review (risk {answer['risk_level']})")
    return reasons


@workflow.defn(name=NAME)
class ComplianceDocumentationWorkflow(ApprovalsMixin):
    def __init__(self) -> None:
        self.ledger = LlmLedger()
        self.timeline: list[TimelineEntry] = []

    def _event(self, text: str) -> None:
        self.timeline.append(TimelineEntry(at=workflow.now(), event=text))

    @workflow.run
    async def run(self, request: ComplianceInput) -> ComplianceResult:
        self._event("review started")

        enter_stage("extract", "Extracting applicant facts")
        extracted = await self._extract(
            ExtractRequest(applicant=request.applicant, documents=request.documents, as_of=workflow.now().date()))
        self._event(f"facts extracted: country risk {extracted.facts['country_risk']}, "
                    f"{len(extracted.documents)} document(s)")

        enter_stage("classify", "Classifying risk")
        classification = await self.ledger.run(LlmTaskRequest(
            task="risk-classification", step="classify", facts=extracted.facts,
            untrusted=[UntrustedText(name=d.name, text=d.text) for d in request.documents],
            tenant=workflow.memo_value("tenant", "") or None,  # whose daily spend cap applies
        ))
        record = classification.record
        answer = classification.answer
        # Without a valid answer nobody knows the risk: report the most cautious level.
        risk_level = answer["risk_level"] if answer else "high"
        reasons = list(answer["reasons"]) if answer else ["no valid classification: treated as high risk"]
        explanation = answer["explanation"] if answer else "; ".join(classification.review_reasons)
        workflow.upsert_search_attributes([RISK_LEVEL.value_set(risk_level)])
        self._event(f"classified {risk_level} risk by {record.model_version} ({record.prompt_template})"
                    if answer else f"classification held for review: {'; '.join(classification.review_reasons)}")

        review_reasons = review_reasons_for(request.applicant.pep, classification,
                                            extracted.policy.confidence_threshold)
        enter_stage("review")
        if not review_reasons:
            decision = ReportDecision(decision="approved", decided_by="policy", decided_at=workflow.now(),
                                      reason="low risk, cleared by policy")
            receipts: list[dict] = []
            self._event("cleared by policy")
        else:
            self._event(f"sent to review: {'; '.join(review_reasons)}")
            decision, receipts = await self._human_review(request, extracted, risk_level, reasons, explanation,
                                                          review_reasons, record.model_dump(mode="json"))

        enter_stage("report", "Writing the compliance report")
        report: ArtifactRef = await execute_cpu_activity(
            generate_compliance_report,
            ComplianceReportInput(
                run_id=workflow.info().workflow_id, tenant=workflow.memo_value("tenant", "") or None,
                generated_at=workflow.now(), applicant=extracted.applicant,
                documents=extracted.documents, risk_level=risk_level, reasons=reasons, explanation=explanation,
                review_reasons=review_reasons, llm_records=self.ledger.usage.records, decision=decision,
                receipts=receipts, timeline=[*self.timeline, TimelineEntry(at=workflow.now(), event="report written")],
            ),
            start_to_close_timeout=REPORT_TIMEOUT, retry_policy=REPORT_RETRY,
        )
        record_artifacts([report])

        enter_stage("notify", "Notifying")
        targets = [WebhookTarget(kind="platform", url=None)]
        # Runs started since events exist have their callback_url called by the event delivery
        # machinery (docs/events.md) when they end; runs started before still call it here.
        callback_url = workflow.memo_value("callback_url", None)
        if callback_url and workflow.memo_value("callback_delivery", None) != "events":
            targets.insert(0, WebhookTarget(kind="callback", url=callback_url))
        notifications = await notify(targets, "compliance.decision", {
            "run_id": workflow.info().workflow_id, "decision": decision.decision, "risk_level": risk_level,
            "decided_by": decision.decided_by, "report": {"name": report.name, "sha256": report.sha256},
        }, step="notify")

        enter_stage("done", f"Compliance review {decision.decision} ({risk_level} risk) by {decision.decided_by}")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return ComplianceResult(
            decision=decision.decision, risk_level=risk_level, decided_by=decision.decided_by,
            comment=decision.comment, reason=decision.reason, reasons=reasons,
            review_reasons=review_reasons, report=ReportReference(name=report.name, sha256=report.sha256),
            llm=self.ledger.usage, notifications=notifications,
        )

    async def _extract(self, request: ExtractRequest) -> ExtractedFacts:
        if workflow.patched(EXTRACT_AS_LOCAL_ACTIVITY):
            return await workflow.execute_local_activity(
                extract_applicant_facts, request, start_to_close_timeout=EXTRACT_TIMEOUT,
                schedule_to_close_timeout=EXTRACT_SCHEDULE_TIMEOUT, retry_policy=EXTRACT_RETRY,
            )
        return await workflow.execute_activity(
            extract_applicant_facts, request, start_to_close_timeout=EXTRACT_TIMEOUT, retry_policy=EXTRACT_RETRY,
        )

    async def _human_review(self, request: ComplianceInput, extracted: ExtractedFacts, risk_level: str,
                            reasons: list[str], explanation: str, review_reasons: list[str],
                            record: dict) -> tuple[ReportDecision, list[dict]]:
        timeout = request.approval_timeout
        outcome = await self.request_approval(ApprovalRequest(
            key=REVIEW_KEY,
            title=f"Compliance review {extracted.applicant.document_id} ({extracted.applicant.country})",
            summary=f"{risk_level.capitalize()} risk. A person must decide because "
                    f"{'; '.join(review_reasons)}.",
            roles=["approver"],
            shown={
                "risk_level": risk_level, "reasons": reasons, "explanation": explanation,
                "review_reasons": review_reasons,
                "applicant": extracted.applicant.model_dump(mode="json"),
                "documents": [d.model_dump(mode="json") for d in extracted.documents],
                "classification": {k: record[k] for k in ("provider", "model_version", "prompt_template",
                                                          "prompt_sha256", "confidence", "injection_flags")},
            },
            ladder=[
                LadderStep(after=timeout, action="escalate", to_roles=[ESCALATION_ROLE]),
                LadderStep(after=timeout * 2, action="decide", decision="reject", reason=TIMED_OUT_REASON),
            ],
        ))
        state = self._approvals[REVIEW_KEY]
        for event in state.events:
            self.timeline.append(TimelineEntry(at=event.at, event=f"approval {event.kind}: {event.detail}"))
        receipts = [r.model_dump(mode="json") for r in outcome.receipts]
        deciding = [r for r in outcome.receipts if (r.decision == "approve") == outcome.approved]
        decided_at = deciding[-1].decided_at if deciding else workflow.now()
        return ReportDecision(
            decision="approved" if outcome.approved else "rejected",
            decided_by=outcome.decided_by[0] if outcome.decided_by else "policy",
            decided_at=decided_at,
            comment=deciding[-1].comment if deciding else None,
            reason=outcome.reason,
            receipt_sha256=state.shown_sha256,
        ), receipts


def _summary(request: ComplianceInput) -> str:
    # No personal names in the UI summary: the document id and country identify the case.
    return f"Compliance review: {request.applicant.document_id}, {request.applicant.country}"


SPEC = WorkflowSpec(
    name=NAME,
    description="KYC-style compliance review: extraction, LLM risk classification, human review, PDF report, "
                "signed notification.",
    workflow=ComplianceDocumentationWorkflow,
    input_model=ComplianceInput,
    output_model=ComplianceResult,
    activities=(extract_applicant_facts, run_llm_task, generate_compliance_report, deliver_webhook,
                *APPROVAL_ACTIVITIES),
    summary=_summary,
    # A clear case: low risk, so policy decides and the run needs no person. Invented, and the
    # applicant's name says so.
    sample_input={
        "applicant": {"full_name": "Sample Applicant", "date_of_birth": "1985-05-20", "country": "DE",
                      "document_id": "DE-SAMPLE-01", "occupation": "Teacher", "annual_income": 50000,
                      "source_of_funds": "salary", "pep": False},
        "documents": [{"name": "payslip.txt", "text": "Payslip October 2026. Net salary 3,000 EUR."}],
    },
)

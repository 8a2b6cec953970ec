"""The design card's compliance steps as building blocks of declarative definitions: extract the
applicant's data, classify the risk, write the report (definitions/compliance-documentation-steps.yaml).

Each takes the step context (activities/step_context.py) and reads what it needs from the run's
input and from the steps before it, so a definition lists them by name, in order, and nothing
else. They reuse the code workflow's own activities: the same rules, the same LLM task, the same
report. The report here is written before a person decides, so it says the decision is pending.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.artifacts.store import ArtifactRef
from activities.compliance.extract import ExtractedFacts, ExtractRequest, extract_applicant_facts
from activities.compliance.models import ComplianceInput
from activities.llm import errors as llm_errors
from activities.llm.activity import run_llm_task
from activities.llm.models import LlmCallRecord, LlmTaskRequest, LlmTaskResult, UntrustedText
from activities.reports.compliance_report import generate_compliance_report
from activities.reports.models import ComplianceReportInput, ReportDecision
from activities.step_context import StepContext


@activity.defn(name="ExtractApplicantData")
async def extract_applicant_data(context: StepContext) -> ExtractedFacts:
    """The applicant's facts from the run's input (a compliance-documentation input)."""
    request = context.run_input(ComplianceInput, "an applicant with documents")
    return await extract_applicant_facts(ExtractRequest(applicant=request.applicant, documents=request.documents,
                                                        as_of=datetime.now(UTC).date()))


@activity.defn(name="ClassifyRisk")
async def classify_risk(context: StepContext) -> LlmTaskResult:
    """The risk-classification LLM task over the facts extracted before; the documents are its
    untrusted text. An answer invalid after its repair is held for a person, as in the code workflow."""
    extracted = context.latest(ExtractedFacts, "an applicant's facts (ExtractApplicantData)")
    documents = context.run_input(ComplianceInput, "an applicant with documents").documents
    request = LlmTaskRequest(task="risk-classification", step=context.step, facts=extracted.facts,
                             untrusted=[UntrustedText(name=d.name, text=d.text) for d in documents],
                             tenant=context.run.tenant or None)
    try:
        return await run_llm_task(request)
    except ApplicationError as error:
        if error.type not in llm_errors.ROUTE_TO_REVIEW or not error.details:
            raise
        record = LlmCallRecord.model_validate(error.details[0])
        return LlmTaskResult(record=record, needs_review=True, review_reasons=[error.message])


# A plain `def`: rendering is CPU work, so it runs in the worker's process pool (workers/cpu.py).
@activity.defn(name="GenerateComplianceReport")
def generate_compliance_report_step(context: StepContext) -> ArtifactRef:
    """The compliance report of what the steps before found, with the decision still pending."""
    extracted = context.latest(ExtractedFacts, "an applicant's facts (ExtractApplicantData)")
    classified = context.latest(LlmTaskResult, "a risk classification (ClassifyRisk)")
    answer = classified.answer or {}
    now = datetime.now(UTC)
    return generate_compliance_report(ComplianceReportInput(
        run_id=context.run.id, tenant=context.run.tenant or None, generated_at=now, applicant=extracted.applicant,
        documents=extracted.documents,
        # Without a valid answer nobody knows the risk: the most cautious level, as the code workflow does.
        risk_level=answer.get("risk_level", "high"),
        reasons=list(answer.get("reasons") or ["no valid classification: treated as high risk"]),
        explanation=answer.get("explanation") or "; ".join(classified.review_reasons),
        review_reasons=classified.review_reasons, llm_records=[classified.record],
        decision=ReportDecision(decision="pending", decided_by="a person, after this report", decided_at=now,
                                reason="The report is written before the human approval step."),
    ))


STEP_ACTIVITIES = (extract_applicant_data, classify_risk, generate_compliance_report_step)
# What each returns, so the interpreter reads typed results: LLM records go to the run's ledger,
# artifacts to its artifact list, and the audit log sees both (workers/audit.py).
RESULT_TYPES: dict[str, type[BaseModel]] = {
    "ExtractApplicantData": ExtractedFacts, "ClassifyRisk": LlmTaskResult, "GenerateComplianceReport": ArtifactRef,
}

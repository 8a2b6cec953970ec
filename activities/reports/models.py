"""What a compliance report is made of: everything the workflow decided and why, with the audit trail."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

from activities.llm.models import LlmCallRecord

REPORT_NAME = "compliance-report.pdf"
REPORT_CONTENT_TYPE = "application/pdf"


class ApplicantSummary(BaseModel):
    full_name: str
    date_of_birth: date
    age: int
    country: str
    document_id: str
    occupation: str | None = None
    annual_income: float | None = None
    source_of_funds: str | None = None
    pep: bool = False


class DocumentDigest(BaseModel):
    name: str
    content_type: str
    sha256: str
    bytes: int


class ReportDecision(BaseModel):
    decision: Literal["approved", "rejected", "pending"] = Field(
        description="pending: the report was written before a person decided (a declarative definition's order).")
    decided_by: str = Field(description='"policy", or the approver\'s sub.')
    decided_at: datetime
    comment: str | None = None
    reason: str | None = Field(None, description="Why, when the policy or the ladder decided.")
    receipt_sha256: str | None = Field(None, description="SHA-256 of what the approver was shown.")


class TimelineEntry(BaseModel):
    at: datetime
    event: str


class ComplianceReportInput(BaseModel):
    run_id: str
    tenant: str | None = Field(None, description="The run's tenant: the report is encrypted under its key.")
    generated_at: datetime = Field(description="The workflow's clock: the same input renders the same PDF.")
    applicant: ApplicantSummary
    documents: list[DocumentDigest] = Field(default_factory=list)
    risk_level: Literal["low", "medium", "high"]
    reasons: list[str] = Field(default_factory=list)
    explanation: str = ""
    review_reasons: list[str] = Field(default_factory=list, description="Why a person had to decide, if so.")
    llm_records: list[LlmCallRecord] = Field(default_factory=list)
    decision: ReportDecision
    receipts: list[dict] = Field(default_factory=list, description="Approval receipts, as recorded on the run.")
    timeline: list[TimelineEntry] = Field(default_factory=list)

"""Extract: normalise the applicant, derive the facts classification needs, fingerprint documents."""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Any

from pydantic import BaseModel
from temporalio import activity

from activities.compliance.models import Applicant, ApplicantDocument
from activities.compliance.reference import income_consistency
from activities.reports.models import ApplicantSummary, DocumentDigest
from steward import runtime


class ExtractRequest(BaseModel):
    applicant: Applicant
    documents: list[ApplicantDocument]
    as_of: date  # the workflow's date: ages are computed for the day the review started


class CompliancePolicy(BaseModel):
    """The settings the workflow's rules need, handed over as a result (workflows read no settings)."""

    confidence_threshold: float


class ExtractedFacts(BaseModel):
    applicant: ApplicantSummary
    facts: dict[str, Any]
    documents: list[DocumentDigest]
    policy: CompliancePolicy


def age_on(born: date, day: date) -> int:
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


@activity.defn(name="extract-applicant-facts")
async def extract_applicant_facts(request: ExtractRequest) -> ExtractedFacts:
    settings = runtime.settings()
    a = request.applicant
    country = a.country.upper()
    country_risk = (
        "sanctioned" if country in {c.upper() for c in settings.sanctioned_countries}
        else "high" if country in {c.upper() for c in settings.high_risk_countries}
        else "standard"
    )
    age = age_on(a.date_of_birth, request.as_of)
    source = (a.source_of_funds or "").strip() or None
    summary = ApplicantSummary(
        full_name=" ".join(a.full_name.split()), date_of_birth=a.date_of_birth, age=age, country=country,
        document_id=a.document_id.strip(), occupation=(a.occupation or "").strip() or None,
        annual_income=a.annual_income, source_of_funds=source, pep=a.pep,
    )
    # What the classifier sees: no name, no document number — it needs neither to judge risk.
    facts = {
        "age": age, "country": country, "country_risk": country_risk, "pep": a.pep,
        "occupation": summary.occupation, "annual_income": a.annual_income, "source_of_funds": source,
        "income_vs_occupation": income_consistency(summary.occupation, a.annual_income),
        "documents_supplied": len(request.documents),
    }
    documents = [
        DocumentDigest(name=d.name, content_type=d.content_type, sha256=hashlib.sha256(d.text.encode()).hexdigest(),
                       bytes=len(d.text.encode()))
        for d in request.documents
    ]
    activity.logger.info("applicant facts extracted", extra={"country_risk": country_risk,
                                                              "documents": len(documents)})
    return ExtractedFacts(applicant=summary, facts=facts, documents=documents,
                          policy=CompliancePolicy(confidence_threshold=settings.compliance_confidence_threshold))

"""The extract step: ages, country risk from the configured lists, income against occupation."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError
from temporalio.testing import ActivityEnvironment

from activities.compliance.extract import ExtractRequest, age_on, extract_applicant_facts
from activities.compliance.models import ApplicantDocument, ComplianceInput
from steward import runtime

APPLICANT = {"full_name": "  Ada   Lovelace ", "date_of_birth": "1990-06-15", "country": "GB", "document_id": "P1234",
             "occupation": "Engineer", "annual_income": 95000, "source_of_funds": "salary"}


async def extract(settings, **overrides):
    runtime.configure(settings.model_copy(update={"sanctioned_countries": ["IR"], "high_risk_countries": ["MM"]}))
    try:
        request = ExtractRequest.model_validate({"applicant": {**APPLICANT, **overrides}, "as_of": "2026-06-14",
                                                 "documents": [{"name": "id.txt", "text": "Passport P1234"}]})
        return await ActivityEnvironment().run(extract_applicant_facts, request)
    finally:
        runtime.configure(settings)


def test_age_counts_whole_years_to_the_day():
    assert age_on(date(1990, 6, 15), date(2026, 6, 14)) == 35
    assert age_on(date(1990, 6, 15), date(2026, 6, 15)) == 36
    assert age_on(date(2000, 2, 29), date(2026, 2, 28)) == 25


async def test_facts_carry_what_classification_needs_and_no_identity(settings):
    extracted = await extract(settings)
    assert extracted.applicant.full_name == "Ada Lovelace" and extracted.applicant.age == 35
    assert extracted.facts == {"age": 35, "country": "GB", "country_risk": "standard", "pep": False,
                               "occupation": "Engineer", "annual_income": 95000.0, "source_of_funds": "salary",
                               "income_vs_occupation": "consistent", "documents_supplied": 1}
    assert "Ada" not in str(extracted.facts) and "P1234" not in str(extracted.facts)
    assert extracted.documents[0].bytes == 14 and len(extracted.documents[0].sha256) == 64
    assert extracted.policy.confidence_threshold == settings.compliance_confidence_threshold


@pytest.mark.parametrize(("country", "risk"), [("IR", "sanctioned"), ("MM", "high"), ("FR", "standard")])
async def test_country_risk_comes_from_the_configured_lists(settings, country, risk):
    assert (await extract(settings, country=country)).facts["country_risk"] == risk


async def test_income_far_above_the_occupation_is_inconsistent(settings):
    facts = (await extract(settings, occupation="student", annual_income=400000)).facts
    assert facts["income_vs_occupation"] == "inconsistent"
    assert (await extract(settings, occupation="astronaut")).facts["income_vs_occupation"] == "unknown"


@pytest.mark.parametrize(("change", "field"), [
    ({"country": "Germany"}, "applicant.country"), ({"date_of_birth": "1850-01-01"}, "applicant.date_of_birth"),
    ({"annual_income": -5}, "applicant.annual_income"), ({"document_id": "../x"}, "applicant.document_id"),
])
def test_bad_applicant_fields_are_refused_with_their_path(change, field):
    with pytest.raises(ValidationError) as raised:
        ComplianceInput.model_validate({"applicant": {**APPLICANT, **change}})
    assert field in {".".join(map(str, e["loc"])) for e in raised.value.errors()}


@pytest.mark.parametrize("timeout", ["PT30S", "P91D"])
def test_approval_timeout_outside_bounds_is_refused(timeout):
    with pytest.raises(ValidationError, match="approval_timeout"):
        ComplianceInput.model_validate({"applicant": APPLICANT, "approval_timeout": timeout})


def test_documents_are_limited_in_number():
    docs = [ApplicantDocument(name=f"d{i}", text="x").model_dump() for i in range(21)]
    with pytest.raises(ValidationError, match="documents"):
        ComplianceInput.model_validate({"applicant": APPLICANT, "documents": docs})

"""The compliance review's input, as callers send it: validated before any run starts."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, field_validator

MIN_APPROVAL_TIMEOUT = timedelta(minutes=1)
MAX_APPROVAL_TIMEOUT = timedelta(days=90)


def _plausible_birth_date(value: date) -> date:
    if value.year < 1900:
        raise ValueError("date_of_birth is before 1900")
    return value


# A person's facts as every workflow that reviews one takes them (customer-onboarding's contact too).
FullName = Annotated[str, Field(min_length=1, max_length=200)]
BirthDate = Annotated[date, AfterValidator(_plausible_birth_date)]
CountryCode = Annotated[str, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2, e.g. DE.")]
DocumentId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._/-]*$")]
Occupation = Annotated[str | None, Field(max_length=200)]
AnnualIncome = Annotated[float | None, Field(ge=0)]
SourceOfFunds = Annotated[str | None, Field(max_length=500)]


class Applicant(BaseModel):
    full_name: FullName
    date_of_birth: BirthDate
    country: CountryCode
    document_id: DocumentId
    occupation: Occupation = None
    annual_income: AnnualIncome = None
    source_of_funds: SourceOfFunds = None
    pep: bool = Field(False, description="Politically exposed person.")


class ApplicantDocument(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    content_type: str = Field("text/plain", max_length=100)
    text: str = Field(max_length=262_144)


class ComplianceInput(BaseModel):
    applicant: Applicant
    documents: list[ApplicantDocument] = Field(default_factory=list, max_length=20)
    approval_timeout: timedelta = Field(
        timedelta(hours=72),
        description="ISO 8601 duration (e.g. P3D): how long an approver has before the review escalates to "
        "compliance_lead; after a second such period it is rejected.",
    )

    @field_validator("approval_timeout")
    @classmethod
    def timeout_in_bounds(cls, value: timedelta) -> timedelta:
        if not MIN_APPROVAL_TIMEOUT <= value <= MAX_APPROVAL_TIMEOUT:
            raise ValueError("approval_timeout must be between PT1M and P90D")
        return value

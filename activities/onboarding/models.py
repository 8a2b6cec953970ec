"""customer-onboarding's input, as callers send it, and the welcome e-mail's models."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, EmailStr, Field, field_validator

from activities.compliance.models import (
    AnnualIncome,
    ApplicantDocument,
    BirthDate,
    CountryCode,
    DocumentId,
    FullName,
    Occupation,
    SourceOfFunds,
)
from activities.connectors.models import Plan

MIN_ACTIVATION_TTL = timedelta(hours=1)
MAX_ACTIVATION_TTL = timedelta(days=30)


class Customer(BaseModel):
    company_name: str = Field(min_length=1, max_length=200)
    plan: Plan
    country: CountryCode


class Contact(BaseModel):
    """The person who will use the account: reviewed for compliance, given a user, sent the welcome."""

    full_name: FullName
    email: EmailStr
    date_of_birth: BirthDate
    document_id: DocumentId
    pep: bool = Field(False, description="Politically exposed person: the compliance review goes to a person.")
    # What the compliance review weighs besides the above; one it lacks makes it less certain, so
    # a contact without them goes to a person (activities/compliance/).
    occupation: Occupation = None
    annual_income: AnnualIncome = None
    source_of_funds: SourceOfFunds = None


class OnboardingInput(BaseModel):
    customer: Customer
    contact: Contact
    documents: list[ApplicantDocument] = Field(
        default_factory=list, max_length=20, description="Passed to the contact's compliance review.")
    activation_ttl: timedelta = Field(
        timedelta(days=7), description="ISO 8601 duration: how long the activation link works (PT1H to P30D). "
                                       "Unused by then, the onboarding is undone.")

    @field_validator("activation_ttl")
    @classmethod
    def ttl_in_bounds(cls, value: timedelta) -> timedelta:
        if not MIN_ACTIVATION_TTL <= value <= MAX_ACTIVATION_TTL:
            raise ValueError("activation_ttl must be between PT1H and P30D")
        return value


class WelcomeRequest(BaseModel):
    onboarding_id: str
    message_id: str = Field(description="Identical on every retry; the Message-ID adds the attempt.")
    to: str = Field(max_length=320)
    contact_name: str
    company_name: str
    plan: Plan
    expires_at: datetime
    occurred_at: datetime


class WelcomeSent(BaseModel):
    """What the run keeps of the welcome e-mail: never the token, only its digest."""

    token_sha256: str
    transport: Literal["smtp", "maildir"]
    attempt: int


class ActivateInput(BaseModel):
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ActivationRecord(BaseModel):
    activated_at: datetime

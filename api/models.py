"""Request and response models of the HTTP API (v1)."""

from __future__ import annotations

import re
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

from pydantic import AnyHttpUrl, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from activities.artifacts.store import ArtifactRef
from activities.events.model import TYPES as EVENT_TYPES
from activities.incidents.models import IncidentView
from activities.llm.models import LlmUsage
from workflows.approvals import ApprovalState
from workflows.customer_onboarding import OnboardingView



_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


def _date_time_text(value: Any) -> Any:
    """A date-time given as a number (pydantic would read 0.5 as half a second after 1970) is refused:
    the document promises ISO 8601 text, and a number is more likely a mistake than an epoch."""
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError("must be an ISO 8601 date-time, e.g. 2026-11-01T00:00:00Z")
    return value


# A date-time a request carries: ISO 8601 text, as the document's `format: date-time` says.
IsoDateTime = Annotated[datetime, BeforeValidator(_date_time_text)]

# Names the document lists, so a generated client offers them; the routes check them and name
# GET /v1/events/types or GET /v1/workflows in their refusal. A workflow's list is the catalog's
# at the time (api/openapi.py fills it in, and refills it when definitions change).
EventTypeName = Annotated[str, WithJsonSchema({"type": "string", "enum": sorted(EVENT_TYPES)})]
EventTypeFilter = Annotated[str, WithJsonSchema({"type": "string", "enum": ["*", *sorted(EVENT_TYPES)]})]
CATALOG_MARK = "x-steward-catalog-workflow"
WorkflowName = Annotated[str, WithJsonSchema({"type": "string", CATALOG_MARK: True})]

class RunStatus(str, Enum):
    running = "running"
    waiting_for_approval = "waiting_for_approval"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    terminated = "terminated"
    timed_out = "timed_out"


class WorkflowInfo(BaseModel):
    name: str
    description: str
    task_queue: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    tags: list[str] = Field(default_factory=list, description="`declarative` for a workflow defined in YAML.")


class WorkflowCatalog(BaseModel):
    workflows: list[WorkflowInfo]


class StartRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: dict[str, Any] = Field(description="The workflow's input; see its input_schema.")
    callback_url: AnyHttpUrl | None = Field(
        None,
        description="Called when the run ends (run.completed, run.failed, run.cancelled or run.timed_out), as a "
        "Standard Webhook signed with the platform secret and retried for up to a day (docs/events.md); shown in the "
        "run's details.",
    )


class RunLinks(BaseModel):
    self: str


class RunAccepted(BaseModel):
    id: str = Field(description="The Temporal Workflow ID: search for it in the Temporal UI.")
    workflow: str
    status: RunStatus
    links: RunLinks


class RunError(BaseModel):
    type: str
    message: str


class RunSummary(BaseModel):
    id: str
    workflow: str
    status: RunStatus
    stage: str | None
    requested_by: str | None
    tenant: str
    started_at: datetime | None
    closed_at: datetime | None
    links: RunLinks


class RunDetail(RunSummary):
    callback_url: str | None = Field(
        None, description="Where the run's end is posted, with any userinfo, query string and fragment shown as "
                          "REDACTED: they may hold credentials.")
    definition_sha256: str | None = Field(None, description="A declarative run: the SHA-256 of the definition "
                                                            "it runs, as it was when the run started.")
    schedule: str | None = Field(None, description="The schedule that started the run (GET /v1/schedules/{name}).")
    result: dict[str, Any] | None = None
    error: RunError | None = None
    llm: LlmUsage | None = Field(None, description="Every LLM call of the run, with token and cost totals.")
    approvals: list[ApprovalState] = Field(default_factory=list, description="Approvals asked for, with receipts.")
    artifacts: list[ArtifactRef] = Field(
        default_factory=list, description="Files the run produced: GET /v1/runs/{id}/artifacts/{name}."
    )
    notifications: list[dict[str, Any]] = Field(
        default_factory=list, description="Webhook deliveries, each delivered or recorded as undelivered."
    )
    incident: IncidentView | None = Field(
        None, description="incident-response: alerts, hypotheses, pages sent and failed, who acknowledged, the "
                          "remediation decision, the timeline."
    )
    onboarding: OnboardingView | None = Field(
        None, description="customer-onboarding: each step and its state, the compliance review's run and "
                          "decision, the activation deadline, and on failure why and what was undone."
    )


class RunPage(BaseModel):
    runs: list[RunSummary]
    next_page_token: str | None = Field(None, description="Pass back to get the next page.")


class CancelAccepted(BaseModel):
    id: str
    cancel_requested: bool = True
    links: RunLinks


class Health(BaseModel):
    status: str
    temporal: str | None = None

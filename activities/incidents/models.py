"""What an incident is made of: its input, the alerts that reach it, what happened to it.

These cross the Temporal boundary (workflow input, signals, updates, results, the run's memo), so
they live beside the activities and are imported by the workflow through the sandbox's passthrough.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, field_validator

from activities.llm.models import LlmUsage

Severity = Literal["critical", "high", "warning", "info"]
State = Literal["triggered", "acknowledged", "resolved"]
SEVERITIES: tuple[str, ...] = ("critical", "high", "warning", "info")
# Severity label values seen in the wild, and the four Steward names they mean.
SEVERITY_ALIASES = {
    "critical": "critical", "crit": "critical", "page": "critical", "p1": "critical", "sev1": "critical",
    "emergency": "critical", "fatal": "critical",
    "high": "high", "error": "high", "major": "high", "p2": "high", "sev2": "high",
    "warning": "warning", "warn": "warning", "minor": "warning", "medium": "warning", "p3": "warning",
    "sev3": "warning",
    "info": "info", "informational": "info", "low": "info", "none": "info", "p4": "info", "p5": "info",
    "sev4": "info",
}
# Labels that name the service, in the order they are looked for.
SERVICE_LABELS = ("service", "app", "app_kubernetes_io_name", "job", "namespace")

LABEL_KEY = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


def _prometheus_names(labels: dict[str, str]) -> dict[str, str]:
    for key in labels:
        if not re.match(LABEL_KEY, key):
            raise ValueError(f"label name {key!r} is not a Prometheus label name")
    return labels


# Labels as Prometheus and Alertmanager name them; the schema says so, for generated clients.
LabelSet = Annotated[dict[str, str], AfterValidator(_prometheus_names),
                     Field(json_schema_extra={"propertyNames": {"pattern": LABEL_KEY}})]


def severity_of(labels: dict[str, str], default: Severity = "warning") -> Severity:
    return SEVERITY_ALIASES.get(labels.get("severity", "").strip().lower(), default)  # type: ignore[return-value]


def service_of(labels: dict[str, str]) -> str:
    return next((labels[k] for k in SERVICE_LABELS if labels.get(k)), "unknown")


class IncidentInput(BaseModel):
    """An incident as the run API takes it (the Alertmanager hook builds the same from a group)."""

    title: str = Field(min_length=1, max_length=200)
    severity: Severity
    service: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
    description: str = Field("", max_length=4000)
    labels: dict[str, str] = Field(default_factory=dict, max_length=64, json_schema_extra={
        "propertyNames": {"pattern": LABEL_KEY}, "additionalProperties": {"type": "string", "maxLength": 1024}})
    log_excerpt: str | None = Field(None, max_length=65_536, description="Log lines to analyse: data, never instructions.")

    @field_validator("labels")
    @classmethod
    def labels_are_prometheus_shaped(cls, labels: dict[str, str]) -> dict[str, str]:
        for key, value in labels.items():
            if not re.match(LABEL_KEY, key):
                raise ValueError(f"label name {key!r} is not a Prometheus label name")
            if len(value) > 1024:
                raise ValueError(f"label {key!r} is longer than 1024 characters")
        return labels


class Alert(BaseModel):
    fingerprint: str = Field(min_length=1, max_length=128)
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime
    ends_at: datetime | None = Field(None, description="None while firing.")
    generator_url: str | None = None

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "alert")


class AlertNotification(BaseModel):
    """One Alertmanager notification for a group, as the hook received it (normalised)."""

    status: Literal["firing", "resolved"]
    group_key: str = Field(max_length=2000)
    group_labels: dict[str, str] = Field(default_factory=dict)
    common_labels: dict[str, str] = Field(default_factory=dict)
    common_annotations: dict[str, str] = Field(default_factory=dict)
    external_url: str | None = None
    receiver: str | None = None
    alerts: list[Alert] = Field(default_factory=list)
    truncated_alerts: int = 0


class AckInput(BaseModel):
    comment: str = Field("", max_length=2000)
    link_recipient: str | None = Field(None, description="Set by the API for an acknowledge link: who it was sent to.")


class ResolveInput(BaseModel):
    comment: str = Field("", max_length=2000)


class Hypothesis(BaseModel):
    cause: str
    likelihood: float
    evidence: list[str] = Field(default_factory=list)


class SuggestedRemediation(BaseModel):
    action: str
    rationale: str
    risk: Literal["low", "medium", "high"]


class AckRecord(BaseModel):
    by: str
    via: Literal["api", "link"]
    at: datetime
    comment: str = ""


class ResolveRecord(BaseModel):
    by: str = Field(description="Who resolved it: a person, 'alertmanager', or 'quiet period'.")
    at: datetime
    comment: str = ""


class RemediationRecord(BaseModel):
    suggestion: SuggestedRemediation | None
    status: Literal["not_configured", "no_suggestion", "pending", "approved", "rejected", "executed", "failed",
                    "not_needed"]
    decided_by: list[str] = Field(default_factory=list)
    reason: str | None = None
    status_code: int | None = Field(None, description="The automation's answer to the signed webhook.")
    error: str | None = None


class PageRecord(BaseModel):
    """One rung's page of one recipient: the channels tried, in order."""

    rung: int
    recipient: str
    at: datetime
    delivered: bool
    cancelled: bool = Field(False, description="Acknowledged or resolved before it went out.")
    deliveries: list[dict[str, Any]] = Field(default_factory=list, description="DeliveryRecord per channel tried.")


class TimelineEntry(BaseModel):
    at: datetime
    event: str


class IncidentView(BaseModel):
    """What GET /v1/runs/{id} shows of an incident (the run's memo, kept up to date)."""

    title: str
    severity: Severity
    service: str
    state: State
    route: str | None = None
    alerts: list[Alert] = Field(default_factory=list, description="The most recent, at most 50.")
    alert_count: int = 0
    notifications: int = Field(0, description="Alertmanager notifications received, repeats included.")
    hypotheses: list[Hypothesis] = Field(default_factory=list)
    remediation: RemediationRecord | None = None
    pages: list[PageRecord] = Field(default_factory=list)
    acknowledged: AckRecord | None = None
    resolved: ResolveRecord | None = None
    timeline: list[TimelineEntry] = Field(default_factory=list)


class ArtifactReference(BaseModel):
    name: str
    sha256: str


class IncidentResult(BaseModel):
    title: str
    severity: Severity
    service: str
    state: State
    acknowledged: AckRecord | None
    resolved: ResolveRecord | None
    time_to_acknowledge_s: float | None
    time_to_resolve_s: float | None
    pages_delivered: int
    pages_failed: int
    top_hypothesis: str | None
    remediation: RemediationRecord | None
    postmortem: ArtifactReference
    llm: LlmUsage

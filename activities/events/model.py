"""Steward's events: what a client may learn about a run as it happens, made from its audit log.

The audit log (activities/audit/) is the one place that knows what happened; an event is an
audit entry seen from outside. `event_of` maps an entry to its event type and keeps only the
fields that type's data model declares, so nothing the audit log holds for auditors (who asked,
subjects, free-text digests) reaches a subscriber unless the type says so. Entries no type maps
(notifications, updates with no outside meaning) are not events.

Every event type has a data model here; `type_schemas` gives each type's JSON Schema for
GET /v1/events/types. An event's `id` is derived from the audit entry's event id, so it is the
same every time the event is streamed or delivered; `sequence` counts a run's events 1, 2, 3 ...
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from activities.audit.log import AuditEntry, digest

ID_PREFIX = "evt_"


class Event(BaseModel):
    """One thing that happened, as streamed (GET /v1/runs/{id}/events) and delivered (subscriptions)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Unique, and the same on every redelivery: de-duplicate on it.")
    type: str = Field(description="Dotted: run.completed, approval.requested, ... (GET /v1/events/types).")
    run_id: str | None = Field(description="The run it happened in; None for tenant events (subscription.disabled).")
    workflow: str | None
    tenant: str
    sequence: int = Field(ge=0, description="The run's events counted 1, 2, 3 ... in order, without gaps; "
                                            "0 for tenant events.")
    occurred_at: datetime
    data: dict[str, Any] = Field(description="Small: ids, states and digests, never personal data.")


# --- each type's data ------------------------------------------------------------------------

class _Data(BaseModel):
    model_config = ConfigDict(extra="ignore")  # what the audit entry holds beyond these stays there


class RunStarted(_Data):
    parent_run: str | None = Field(None, description="The run that started this one as a child.")
    input_sha256: str | None = None
    definition_sha256: str | None = Field(None, description="A declarative run: the SHA-256 of its definition.")


class StageChanged(_Data):
    stage: str


class RunCancelRequested(_Data):
    pass


class RunCompleted(_Data):
    result_sha256: str | None = Field(None, description="GET /v1/runs/{id} has the result itself.")


class RunFailed(_Data):
    error_type: str | None = None


class RunEnded(_Data):
    pass


class ApprovalData(_Data):
    approval: str = Field(description="The approval's key within the run.")
    roles: list[str] = Field(default_factory=list, description="Who may decide it now.")
    quorum: int | None = None
    shown_sha256: str | None = Field(None, description="SHA-256 of what approvers are shown.")


class ApprovalVoted(ApprovalData):
    decision: str = Field(description="approve or reject")
    outcome: str = Field(description="The approval's state after this vote: pending, approved or rejected.")
    receipt_sha256: str = Field(description="SHA-256 of the vote's receipt, as in the audit log.")


class ApprovalDecided(ApprovalData):
    status: str = Field(description="approved, rejected, or expired (decided by the timeout ladder).")
    by_policy: bool = Field(description="Decided by the timeout ladder rather than by votes.")
    receipt_sha256s: list[str] = Field(default_factory=list, description="The receipts of the votes cast.")


class IncidentData(_Data):
    state: str


class IncidentPaged(_Data):
    channel: str | None = None
    recipient_sha256: str | None = None
    delivered: bool


class ArtifactWritten(_Data):
    name: str
    content_type: str
    size: int
    sha256: str


class LlmCallRecorded(_Data):
    step: str
    task: str
    provider: str
    model_version: str
    prompt_template: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    valid: bool
    needs_review: bool


class SubscriptionDisabled(_Data):
    subscription_id: str
    reason: str


@dataclass(frozen=True)
class EventType:
    name: str
    description: str
    data: type[_Data]
    terminal: bool = False


TYPES: dict[str, EventType] = {t.name: t for t in (
    EventType("run.started", "A run started.", RunStarted),
    EventType("run.stage_changed", "A run entered a stage (the Stage search attribute).", StageChanged),
    EventType("run.cancel_requested", "Someone asked for the run to be cancelled.", RunCancelRequested),
    EventType("run.completed", "A run completed; its result is at GET /v1/runs/{id}.", RunCompleted, terminal=True),
    EventType("run.failed", "A run failed.", RunFailed, terminal=True),
    EventType("run.cancelled", "A run was cancelled.", RunEnded, terminal=True),
    EventType("run.timed_out", "A run exceeded its execution timeout.", RunEnded, terminal=True),
    EventType("approval.requested", "A run is waiting for a decision.", ApprovalData),
    EventType("approval.escalated", "The timeout ladder handed an approval to other roles.", ApprovalData),
    EventType("approval.voted", "Someone voted on an approval.", ApprovalVoted),
    EventType("approval.decided", "An approval was decided, by votes or by the timeout ladder.", ApprovalDecided),
    EventType("approval.withdrawn", "An approval nobody needs any more was withdrawn.", ApprovalData),
    EventType("incident.paged", "An incident paged someone (or tried to).", IncidentPaged),
    EventType("incident.acknowledged", "Someone acknowledged an incident.", IncidentData),
    EventType("incident.resolved", "An incident was resolved.", IncidentData),
    EventType("artifact.written", "A run wrote an artifact (a report, a postmortem).", ArtifactWritten),
    EventType("llm.call_recorded", "A run's LLM step was recorded (metadata only).", LlmCallRecorded),
    EventType("subscription.disabled", "A webhook subscription was disabled after failed deliveries or a 410.",
              SubscriptionDisabled),
)}
TERMINAL_TYPES = frozenset(name for name, t in TYPES.items() if t.terminal)


# --- from audit entries ----------------------------------------------------------------------

def _run_ended(data: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    status = data.get("status")
    names = {"completed": "run.completed", "failed": "run.failed", "cancelled": "run.cancelled",
             "timed_out": "run.timed_out"}
    return (names[status], data) if status in names else None  # continued_as_new: the run goes on


def _approval(kind: str) -> Callable[[dict[str, Any]], tuple[str, dict[str, Any]] | None]:
    def mapped(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if kind == "voted":
            receipt = data.get("receipt") or {}
            # Entries written before receipts were digested at the source: the same digest, here.
            return "approval.voted", {**data, "decision": receipt.get("decision"), "outcome": receipt.get("outcome"),
                                      "receipt_sha256": data.get("receipt_sha256") or digest(receipt)}
        if kind in ("decided", "auto_decided"):
            return "approval.decided", {**data, "by_policy": kind == "auto_decided"}
        return f"approval.{kind}", data
    return mapped


def _notification(data: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    if data.get("event_type") == "incident.page":
        return "incident.paged", data
    return None


# Audit kinds that are events of the same name, their data as written.
_AS_WRITTEN = frozenset({"run.started", "run.stage_changed", "run.cancel_requested", "incident.acknowledged",
                         "incident.resolved", "artifact.written", "subscription.disabled"})
_MAPPED: dict[str, Callable[[dict[str, Any]], tuple[str, dict[str, Any]] | None]] = {
    "run.ended": _run_ended,
    **{f"approval.{kind}": _approval(kind) for kind in ("requested", "escalated", "voted", "decided", "auto_decided",
                                                         "withdrawn")},
    "notification.delivered": _notification,
    "notification.undelivered": _notification,
    "llm.call": lambda data: ("llm.call_recorded", data),
}


def _mapped(entry: AuditEntry) -> tuple[str, dict[str, Any]] | None:
    if entry.kind in _AS_WRITTEN:
        return entry.kind, entry.data
    mapper = _MAPPED.get(entry.kind)
    return mapper(entry.data) if mapper else None


def event_id(audit_event_id: str) -> str:
    return ID_PREFIX + hashlib.sha256(audit_event_id.encode()).hexdigest()[:32]


def event_of(entry: AuditEntry, sequence: int) -> Event | None:
    """The event an audit entry is (None when it is none); `sequence` is its number among the run's events."""
    mapped = _mapped(entry)
    if mapped is None:
        return None
    name, data = mapped
    kept = TYPES[name].data.model_validate(data).model_dump(mode="json")
    return Event(id=event_id(entry.event_id), type=name, run_id=entry.run_id, workflow=entry.workflow,
                 tenant=entry.tenant, sequence=sequence if entry.run_id else 0, occurred_at=entry.at, data=kept)


def run_events(entries: list[AuditEntry]) -> list[Event]:
    """A run's events from its audit entries (in order, each event once), numbered 1, 2, 3 ..."""
    events: list[Event] = []
    for entry in entries:
        event = event_of(entry, len(events) + 1)
        if event is not None:
            events.append(event)
    return events


def type_schemas() -> list[dict[str, Any]]:
    """Each event type with its description and the JSON Schema of a whole event of that type."""
    envelope = Event.model_json_schema()
    listed = []
    for event_type in TYPES.values():
        schema = copy.deepcopy(envelope)
        data_schema = event_type.data.model_json_schema()
        schema["$defs"] = {**schema.get("$defs", {}), **data_schema.pop("$defs", {})}
        if not schema["$defs"]:
            del schema["$defs"]
        schema["title"] = event_type.name
        schema["properties"]["type"] = {"const": event_type.name, "title": "Type", "type": "string"}
        schema["properties"]["data"] = data_schema
        listed.append({"type": event_type.name, "description": event_type.description,
                       "terminal": event_type.terminal, "schema": schema})
    return listed

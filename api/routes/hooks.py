"""Webhooks from monitoring: Prometheus Alertmanager's notifications open and update incidents.

`POST /v1/hooks/alertmanager` takes Alertmanager's webhook body (version 4) as Alertmanager sends
it, newer and unknown fields tolerated, authenticated by a bearer JWT or API key holding
`hooks:alertmanager` (what `http_config.authorization.credentials_file` sends).

One incident per alert group and tenant: the run id is derived from tenant + groupKey, and a
firing notification reaches the open incident by signal-with-start — it starts the incident if
none is open (after one closed, a new one), and otherwise only signals it, so a repeat pages
nobody again. A resolved notification only signals: with no open incident it starts nothing.
Alertmanager retries on 5xx only, so a body that cannot be right is a 422 naming the field,
and only an unreachable Temporal is a 503.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from activities.incidents.models import (
    Alert, AlertNotification, IncidentInput, LabelSet, service_of, severity_of,
)
from api.deps import CatalogDep, ClientDep, require
from api.errors import ErrorResponse, validation_error
from api.models import IsoDateTime, RunLinks
from api.routes.workflows import new_run_options, request_digest
from api.run_records import run_link
from steward.identity import Principal
from workflows.incident_response import ALERTMANAGER_SIGNAL
from workflows.incident_response import NAME as INCIDENT_WORKFLOW

router = APIRouter(prefix="/v1/hooks", tags=["hooks"])

HookCaller = Annotated[Principal, Depends(require("hooks:alertmanager"))]
# Alertmanager's "no end time yet": 0001-01-01T00:00:00Z while an alert fires.
ZERO_TIME_YEAR = 1
MAX_ALERTS = 1000
_SERVICE_UNSAFE = re.compile(r"[^A-Za-z0-9._:/-]+")



def _no_text_or_truth(value: object) -> object:
    """JSON's integers (1, and 1.0, which JSON Schema counts as one), never "1" or true."""
    if isinstance(value, str | bool):
        raise ValueError("must be a JSON integer")
    return value


JsonInteger = Annotated[int, BeforeValidator(_no_text_or_truth)]

class AlertmanagerAlert(BaseModel):
    model_config = ConfigDict(extra="allow")  # newer Alertmanagers add fields; none are needed

    status: Literal["firing", "resolved"]
    labels: LabelSet = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: IsoDateTime  # noqa: N815 (Alertmanager's names)
    endsAt: IsoDateTime | None = None  # noqa: N815
    generatorURL: str = ""  # noqa: N815
    fingerprint: str = Field(min_length=1, max_length=128)

    @field_validator("endsAt")
    @classmethod
    def zero_means_still_firing(cls, value: datetime | None) -> datetime | None:
        return None if value is None or value.year == ZERO_TIME_YEAR else value


class AlertmanagerNotification(BaseModel):
    """Alertmanager's webhook body, version 4 (prometheus.io/docs/alerting/latest/configuration/#webhook_config)."""

    model_config = ConfigDict(extra="allow")  # notification_reason, routeLabels, ... are tolerated

    version: Literal["4"]
    groupKey: str = Field(min_length=1, max_length=2000)  # noqa: N815
    truncatedAlerts: JsonInteger = Field(0, ge=0)  # noqa: N815
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupLabels: LabelSet = Field(default_factory=dict)  # noqa: N815
    commonLabels: LabelSet = Field(default_factory=dict)  # noqa: N815
    commonAnnotations: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    externalURL: str = ""  # noqa: N815
    alerts: list[AlertmanagerAlert] = Field(min_length=1, max_length=MAX_ALERTS)


class HookAccepted(BaseModel):
    incident: str = Field(description="The incident's run id: one per alert group and tenant.")
    status: Literal["accepted", "ignored"]
    reason: str | None = None
    links: RunLinks


def incident_id(tenant: str, group_key: str) -> str:
    """The run id of a group's incident: tenant-scoped, so two tenants' groups never meet."""
    digest = hashlib.sha256(f"{tenant}\x00{group_key}".encode()).hexdigest()[:32]
    return f"{INCIDENT_WORKFLOW}-{digest}"


def notification_of(body: AlertmanagerNotification) -> AlertNotification:
    return AlertNotification(
        status=body.status, group_key=body.groupKey, group_labels=body.groupLabels, common_labels=body.commonLabels,
        common_annotations=body.commonAnnotations, external_url=body.externalURL or None, receiver=body.receiver,
        truncated_alerts=body.truncatedAlerts,
        alerts=[Alert(fingerprint=a.fingerprint, status=a.status, labels=a.labels, annotations=a.annotations,
                      starts_at=a.startsAt, ends_at=a.endsAt, generator_url=a.generatorURL or None)
                for a in body.alerts],
    )


def incident_input_of(body: AlertmanagerNotification) -> IncidentInput:
    """The incident a group opens: labels common to its alerts (those of the first alert when
    they share none), its summary as the title, severity and service from the labels."""
    labels = body.commonLabels or body.alerts[0].labels
    annotations = body.commonAnnotations or body.alerts[0].annotations
    name = labels.get("alertname") or body.groupLabels.get("alertname") or "alert"
    service = _SERVICE_UNSAFE.sub("-", service_of(labels)).strip("-")[:100] or "unknown"
    return IncidentInput(
        title=(annotations.get("summary") or name)[:200],
        severity=severity_of(labels),
        service=service if service[0].isalnum() else f"s{service}"[:100],
        description=(annotations.get("description") or "")[:4000],
        labels={k: v[:1024] for k, v in list(labels.items())[:64]},
    )


@router.post("/alertmanager", status_code=202, response_model=HookAccepted,
             responses={code: {"model": ErrorResponse} for code in (401, 403, 422, 503)})
async def alertmanager(body: AlertmanagerNotification, principal: HookCaller, client: ClientDep,
                       catalog: CatalogDep) -> HookAccepted:
    spec = catalog.get(INCIDENT_WORKFLOW)
    assert spec is not None  # built in
    run_id = incident_id(principal.tenant, body.groupKey)
    notification = notification_of(body)
    if body.status == "resolved":
        try:
            await client.get_workflow_handle(run_id).signal(ALERTMANAGER_SIGNAL, notification)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            return HookAccepted(incident=run_id, status="ignored", reason="no open incident for this alert group",
                                links=run_link(run_id))
        return HookAccepted(incident=run_id, status="accepted", links=run_link(run_id))
    try:
        validated = incident_input_of(body)
    except ValidationError as exc:
        raise validation_error(exc, prefix=("commonLabels",)) from None
    await client.start_workflow(
        spec.name, validated, id=run_id,
        # A closed incident's id opens a new incident when its group fires again.
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        start_signal=ALERTMANAGER_SIGNAL, start_signal_args=[notification],
        **new_run_options(spec, validated, principal,
                          request_sha256=request_digest(spec, validated.model_dump(mode="json"), None)),
    )
    return HookAccepted(incident=run_id, status="accepted", links=run_link(run_id))

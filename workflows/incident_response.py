"""incident-response: monitoring alerts become a durable, explained incident.

triage → context → root-cause analysis (LLM layer) → page along the route's ladder until someone
acknowledges → remediation, if the route names one and a person approves it → resolved (by
Alertmanager, `POST /v1/runs/{id}/resolve`, or a quiet group) → postmortem PDF.

One run per Alertmanager group and tenant (api/routes/hooks.py): notifications reach it as the
`steward.alertmanager` signal, so a repeat pages nobody again and new alerts join the timeline.
Nobody is paged twice for one problem, nobody is forgotten when the first person sleeps through
the page, and the postmortem writes itself. docs/workflows/incident-response.md describes it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

from steward import metric_names
from steward.search_attributes import INCIDENT_STATE, SERVICE, SEVERITY
from workflows import audit, metrics
from workflows.approvals import APPROVAL_ACTIVITIES, ApprovalRequest, ApprovalsMixin, LadderStep
from workflows.artifacts import record_artifacts
from workflows.cpu_steps import execute_cpu_activity
from workflows.ladder import climb
from workflows.llm_steps import LlmLedger
from workflows.notifications import CHANNEL_ACTIVITIES, ChannelTarget, DeliveryRecord, deliver_notice
from workflows.spec import WorkflowSpec
from workflows.stage import enter_stage

with workflow.unsafe.imports_passed_through():
    from activities.artifacts.store import ArtifactRef
    from activities.incidents.models import (
        AckInput,
        AckRecord,
        Alert,
        AlertNotification,
        ArtifactReference,
        Hypothesis,
        IncidentInput,
        IncidentResult,
        IncidentView,
        PageRecord,
        RemediationRecord,
        ResolveInput,
        ResolveRecord,
        State,
        SuggestedRemediation,
        TimelineEntry,
    )
    from activities.incidents.postmortem import PostmortemInput, generate_postmortem
    from activities.incidents.routing import IncidentRoute, RouteRequest, route_incident
    from activities.llm.activity import run_llm_task
    from activities.llm.models import LlmTaskRequest, UntrustedText
    from activities.notify.message import ActionRequest, Link, Notice
    from activities.notify.webhook import NON_RETRYABLE, WebhookDeliveryRequest, WebhookTarget, deliver_webhook
    from policies.routing import Recipient, RouteStep
    from steward.identity_headers import verified_caller

NAME = "incident-response"
ALERTMANAGER_SIGNAL = "steward.alertmanager"
ACK_UPDATE = "steward.ack"
RESOLVE_UPDATE = "steward.resolve"
MEMO_KEY = "incident"
REMEDIATION_KEY = "remediation"
# The role the API gives a principal acting through an acknowledge link: only it may name the
# link's recipient as the one who acknowledged.
LINK_ROLE = "action-link"
MAX_ALERTS_SHOWN = 50

# ApplicationError types of refused updates; the API maps them to 403 and 409.
UNVERIFIED = "IncidentUnverified"
WRONG_TENANT = "IncidentWrongTenant"
LINK_NOT_ALLOWED = "IncidentLinkNotAllowed"
ALREADY_ACKNOWLEDGED = "IncidentAlreadyAcknowledged"
ALREADY_RESOLVED = "IncidentAlreadyResolved"
FORBIDDEN_TYPES = (UNVERIFIED, WRONG_TENANT, LINK_NOT_ALLOWED)

# Choosing a route reads a file the worker has already parsed: milliseconds, pure, so a local
# activity (a retry reads the same file again; a dead worker's successor just routes again).
ROUTE_TIMEOUT = timedelta(seconds=10)
ROUTE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5)
# Typst renders a postmortem in tens of milliseconds (the first of a new data dir also makes the
# fonts, about 7 s); a burst waits for a free process before the timeout starts.
POSTMORTEM_TIMEOUT = timedelta(minutes=1)
POSTMORTEM_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=1),
                               maximum_attempts=10)
# The runbook automation is told once, idempotently (webhook-id = run + "remediation"); while it
# is down, a few minutes of retries, then the failure is recorded for the people on the incident.
REMEDIATION_TIMEOUT = timedelta(seconds=45)
REMEDIATION_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), backoff_coefficient=2.0,
                                maximum_interval=timedelta(minutes=1), maximum_attempts=5,
                                non_retryable_error_types=list(NON_RETRYABLE))


def summary_of(request: IncidentInput) -> str:
    name = request.labels.get("alertname") or request.title
    return f"Incident: {name} on {request.service} [{request.severity}]"


@workflow.defn(name=NAME)
class IncidentResponseWorkflow(ApprovalsMixin):
    def __init__(self) -> None:
        self.ledger = LlmLedger()
        self.alerts: dict[str, Alert] = {}
        self.state: State = "triggered"
        self.acknowledged: AckRecord | None = None
        self.resolved: ResolveRecord | None = None
        self.pages: list[PageRecord] = []
        self.timeline: list[TimelineEntry] = []
        self.hypotheses: list[Hypothesis] = []
        self.remediation: RemediationRecord | None = None
        self.notifications = 0  # Alertmanager notifications received (repeats included)
        self.last_notification_at: datetime | None = None
        self.request: IncidentInput | None = None
        self.route: IncidentRoute | None = None
        self._paging: list[asyncio.Task[None]] = []

    # --- the run ------------------------------------------------------------------------------

    @workflow.run
    async def run(self, request: IncidentInput) -> IncidentResult:
        self.request = request
        opened_at = workflow.now()
        self._event(f"incident opened: {request.title} ({request.severity}, {request.service})")
        workflow.upsert_search_attributes([SEVERITY.value_set(request.severity), SERVICE.value_set(request.service),
                                           INCIDENT_STATE.value_set(self.state)])
        enter_stage("triage", f"Triage: {request.severity} on {request.service}")

        labels = {**request.labels, "severity": request.severity, "service": request.service}
        self.route = await workflow.execute_local_activity(
            route_incident, RouteRequest(labels=labels), start_to_close_timeout=ROUTE_TIMEOUT, retry_policy=ROUTE_RETRY)
        quiet = asyncio.create_task(self._resolve_when_quiet())

        enter_stage("analyse", "Analysing the root cause")
        analysis = await self.ledger.run(LlmTaskRequest(
            task="root-cause-hypotheses", step="root-cause", facts=self._facts(), untrusted=self._evidence(),
            tenant=workflow.memo_value("tenant", "") or None,
        ))
        answer = analysis.answer or {}
        self.hypotheses = [Hypothesis.model_validate(h) for h in answer.get("hypotheses", [])]
        suggestion = SuggestedRemediation.model_validate(answer["remediation"]) if answer.get("remediation") else None
        self._event(f"root cause: {self.hypotheses[0].cause} ({self.hypotheses[0].likelihood:.0%})" if self.hypotheses
                    else "root cause: no known failure pattern matched" if analysis.answer
                    else f"root-cause analysis held back: {'; '.join(analysis.review_reasons)}")

        if self.state == "triggered":
            enter_stage("page", "Paging until someone acknowledges")
            route = self.route.route
            if not await climb(route.steps, after=lambda step: step.after, started_at=opened_at,
                               done=lambda: self.state != "triggered", on_rung=self._page, repeat=route.repeat,
                               period=route.repeat_every):
                self._event("the ladder ran out: still waiting for someone to acknowledge")
                self._show()
                await workflow.wait_condition(lambda: self.state != "triggered")

        self.remediation = await self._remediate(suggestion)

        if self.state != "resolved":
            enter_stage("resolve", "Acknowledged: waiting for resolution")
            await workflow.wait_condition(lambda: self.state == "resolved")
        quiet.cancel()
        await asyncio.gather(quiet, return_exceptions=True)
        await self._stop_paging()

        enter_stage("postmortem", "Writing the postmortem")
        postmortem: ArtifactRef = await execute_cpu_activity(generate_postmortem, PostmortemInput(
            run_id=workflow.info().workflow_id, tenant=workflow.memo_value("tenant", "") or None,
            generated_at=workflow.now(), first_alert_at=self._first_alert_at(opened_at),
            incident=self._view(), explanation=answer.get("explanation"), llm_records=self.ledger.usage.records,
        ), start_to_close_timeout=POSTMORTEM_TIMEOUT, retry_policy=POSTMORTEM_RETRY)
        record_artifacts([postmortem])

        enter_stage("done", f"Resolved by {self.resolved.by if self.resolved else 'nobody'}")
        await workflow.wait_condition(workflow.all_handlers_finished)
        first = self._first_alert_at(opened_at)
        return IncidentResult(
            title=request.title, severity=request.severity, service=request.service, state=self.state,
            acknowledged=self.acknowledged, resolved=self.resolved,
            time_to_acknowledge_s=(self.acknowledged.at - first).total_seconds() if self.acknowledged else None,
            time_to_resolve_s=(self.resolved.at - first).total_seconds() if self.resolved else None,
            pages_delivered=sum(1 for p in self.pages if p.delivered),
            pages_failed=sum(1 for p in self.pages if not p.delivered and not p.cancelled),
            top_hypothesis=self.hypotheses[0].cause if self.hypotheses else None, remediation=self.remediation,
            postmortem=ArtifactReference(name=postmortem.name, sha256=postmortem.sha256), llm=self.ledger.usage,
        )

    # --- context for the analysis -------------------------------------------------------------

    def _facts(self) -> dict[str, Any]:
        assert self.request is not None
        alerts = list(self.alerts.values())
        return {
            "title": self.request.title, "severity": self.request.severity, "service": self.request.service,
            "labels": self.request.labels,
            "alerts": [{"labels": a.labels, "status": a.status, "starts_at": a.starts_at.isoformat(),
                        "generator_url": a.generator_url} for a in alerts[:20]],
            "runbook_urls": sorted({a.annotations["runbook_url"] for a in alerts if a.annotations.get("runbook_url")}),
        }

    def _evidence(self) -> list[UntrustedText]:
        """Free text from the alerts and the caller: data for the model, screened for injection."""
        assert self.request is not None
        texts = []
        if self.request.description:
            texts.append(UntrustedText(name="description", text=self.request.description))
        if self.request.log_excerpt:
            texts.append(UntrustedText(name="log-excerpt", text=self.request.log_excerpt))
        for alert in list(self.alerts.values())[:20]:
            annotations = "\n".join(f"{k}: {v}" for k, v in sorted(alert.annotations.items()))
            if annotations:
                texts.append(UntrustedText(name=f"alert-{alert.name}-{alert.fingerprint[:12]}", text=annotations))
        return texts

    # --- paging -------------------------------------------------------------------------------

    def _page(self, step: RouteStep, rung: int) -> None:
        """A rung of the ladder: page each of its recipients, beside the ladder, never in its way."""
        for recipient in step.page:
            self._paging.append(asyncio.create_task(self._page_one(recipient, rung)))

    async def _page_one(self, recipient: Recipient, rung: int) -> None:
        record = PageRecord(rung=rung, recipient=recipient.name, at=workflow.now(), delivered=False)
        self.pages.append(record)
        targets = [ChannelTarget(channel=t.channel, to=t.to) for t in recipient.via]
        try:
            deliveries: list[DeliveryRecord] = await deliver_notice(
                targets, self._notice(), event_type="incident.page", step=f"page-{rung}-{recipient.name}")
        except (asyncio.CancelledError, ActivityError) as err:
            if isinstance(err, ActivityError) and not isinstance(err.cause, CancelledError):
                raise
            record.cancelled = True  # acknowledged or resolved before it went out
            self._show()
            return
        record.deliveries = [d.model_dump(mode="json") for d in deliveries]
        record.delivered = any(d.delivered for d in deliveries)
        if record.delivered:
            channel = next(d for d in deliveries if d.delivered)
            self._event(f"paged {recipient.name} by {channel.channel}" + (
                f" after {', '.join(d.channel for d in deliveries if not d.delivered)} failed"
                if len(deliveries) > 1 else ""))
        else:
            self._event(f"page to {recipient.name} failed on every channel: "
                        + "; ".join(f"{d.channel}: {d.error_type}" for d in deliveries))
        self._show()

    def _notice(self) -> Notice:
        assert self.request is not None and self.route is not None
        run_id = workflow.info().workflow_id
        lines = [self.request.description] if self.request.description else []
        if self.hypotheses:
            top = self.hypotheses[0]
            lines.append(f"Top hypothesis: {top.cause} ({top.likelihood:.0%}).")
        return Notice(
            title=f"[{self.request.severity.upper()}] {self.request.title}",
            lines=lines,
            fields=[("Severity", self.request.severity), ("Service", self.request.service),
                    ("Alerts firing", str(sum(1 for a in self.alerts.values() if a.status == "firing")))],
            links=[Link(label="Open the incident", url=f"{self.route.link_base_url}/v1/runs/{run_id}")],
            action=ActionRequest(action="acknowledge", label="Acknowledge", run_id=run_id,
                                 tenant=workflow.memo_value("tenant", "")),
        )

    async def _stop_paging(self) -> None:
        """Pages not yet out stay unsent: acknowledging stops the ladder and what it queued."""
        for task in self._paging:
            if not task.done():
                task.cancel()
        await asyncio.gather(*self._paging, return_exceptions=True)

    # --- remediation --------------------------------------------------------------------------

    async def _remediate(self, suggestion: SuggestedRemediation | None) -> RemediationRecord:
        assert self.request is not None and self.route is not None
        configured = self.route.route.remediation
        if self.state == "resolved":
            return RemediationRecord(suggestion=suggestion, status="not_needed", reason="resolved before acknowledged")
        if configured is None:
            return RemediationRecord(suggestion=suggestion, status="not_configured")
        if suggestion is None:
            return RemediationRecord(suggestion=None, status="no_suggestion")
        record = RemediationRecord(suggestion=suggestion, status="pending")
        self.remediation = record
        self._show()
        enter_stage("remediate", f"Waiting for approval of: {suggestion.action}")
        approval = asyncio.create_task(self.request_approval(ApprovalRequest(
            key=REMEDIATION_KEY, title=f"Remediate: {self.request.title}"[:200],
            summary=f"{suggestion.action}. {suggestion.rationale} Risk: {suggestion.risk}.",
            roles=configured.approver_roles,
            shown={"action": suggestion.action, "rationale": suggestion.rationale, "risk": suggestion.risk,
                   "service": self.request.service, "severity": self.request.severity,
                   "hypotheses": [h.model_dump() for h in self.hypotheses]},
            ladder=[LadderStep(after=configured.approval_timeout, action="decide", decision="reject",
                               reason="remediation not approved in time")],
        )))
        await workflow.wait_condition(lambda: approval.done() or self.state == "resolved")
        if not approval.done():
            self.withdraw_approval(REMEDIATION_KEY, "the incident was resolved")
        outcome = await approval
        record.decided_by, record.reason = outcome.decided_by, outcome.reason
        if outcome.status == "withdrawn":
            record.status = "not_needed"
        elif not outcome.approved:
            record.status = "rejected"
            self._event(f"remediation rejected by {', '.join(outcome.decided_by) or 'nobody'}"
                        + (f": {outcome.reason}" if outcome.reason else ""))
        else:
            self._event(f"remediation approved by {', '.join(outcome.decided_by)}: {suggestion.action}")
            await self._run_remediation(record, configured.webhook_url, suggestion)
        self._show()
        return record

    async def _run_remediation(self, record: RemediationRecord, url: str, suggestion: SuggestedRemediation) -> None:
        assert self.request is not None
        run_id = workflow.info().workflow_id
        try:
            result = await workflow.execute_activity(deliver_webhook, WebhookDeliveryRequest(
                target=WebhookTarget(kind="callback", url=url), message_id=f"{run_id}:remediation",
                event_type="incident.remediation", occurred_at=workflow.now(),
                data={"run_id": run_id, "service": self.request.service, "severity": self.request.severity,
                      "action": suggestion.action, "approved_by": record.decided_by},
            ), start_to_close_timeout=REMEDIATION_TIMEOUT, retry_policy=REMEDIATION_RETRY)
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):
                raise
            record.status = "failed"
            record.error = err.cause.message if isinstance(err.cause, ApplicationError) else str(err.cause or err)
            self._event(f"remediation could not be started: {record.error}")
            return
        record.status, record.status_code = "executed", result.status_code
        self._event(f"remediation started: the automation answered {result.status_code}")

    # --- signals and updates ------------------------------------------------------------------

    @workflow.signal(name=ALERTMANAGER_SIGNAL)
    def on_alertmanager(self, notification: AlertNotification) -> None:
        """A notification for this incident's group: a repeat changes nothing and pages nobody;
        a new alert joins the timeline; the group resolved resolves the incident."""
        self.notifications += 1
        self.last_notification_at = workflow.now()
        if self.state == "resolved":
            self._show()
            return
        for alert in notification.alerts:
            known = self.alerts.get(alert.fingerprint)
            if known is not None and known.status == alert.status:
                continue
            self.alerts[alert.fingerprint] = alert
            verb = "joined" if known is None and len(self.alerts) > 1 else "firing" if alert.status == "firing" else "resolved"
            self._event(f"alert {alert.name} {verb}" + (f" ({alert.fingerprint[:12]})" if known is None else ""))
        if notification.status == "resolved" and all(a.status == "resolved" for a in self.alerts.values()):
            self._resolve(ResolveRecord(by="alertmanager", at=workflow.now(), comment="every alert of the group resolved"))
        self._show()

    def _check_responder(self, request: AckInput | ResolveInput) -> None:
        caller = verified_caller()
        if caller is None:
            raise ApplicationError("the request carries no verified identity; respond through the Steward API",
                                   type=UNVERIFIED)
        if caller.tenant != workflow.memo_value("tenant", ""):
            raise ApplicationError("this incident belongs to another tenant", type=WRONG_TENANT)
        if isinstance(request, AckInput) and request.link_recipient is not None and LINK_ROLE not in caller.roles:
            raise ApplicationError("only an acknowledge link may name who it was sent to", type=LINK_NOT_ALLOWED)
        if self.state == "resolved":
            raise ApplicationError(f"the incident was already resolved by {self.resolved.by if self.resolved else '?'}",
                                   type=ALREADY_RESOLVED)

    @workflow.update(name=ACK_UPDATE)
    def acknowledge(self, request: AckInput) -> AckRecord:
        caller = verified_caller()
        assert caller is not None  # the validator accepted this update
        via = "link" if request.link_recipient else "api"
        self.acknowledged = AckRecord(by=request.link_recipient or caller.sub, via=via, at=workflow.now(),
                                      comment=request.comment)
        self._set_state("acknowledged")
        metrics.observe_duration(metric_names.INCIDENT_TIME_TO_ACKNOWLEDGE_SECONDS, "From an incident's start to "
                                 "its acknowledgement.", metrics.since_start(), severity=self._severity())
        self._event(f"acknowledged by {self.acknowledged.by}" + (" through the link in a page" if via == "link" else ""))
        self._cancel_pages()
        self._show()
        return self.acknowledged

    @acknowledge.validator
    def _validate_acknowledge(self, request: AckInput) -> None:
        self._check_responder(request)
        if self.state == "acknowledged":
            raise ApplicationError(f"the incident was already acknowledged by {self.acknowledged.by if self.acknowledged else '?'}",
                                   type=ALREADY_ACKNOWLEDGED)

    @workflow.update(name=RESOLVE_UPDATE)
    def resolve(self, request: ResolveInput) -> ResolveRecord:
        caller = verified_caller()
        assert caller is not None
        record = ResolveRecord(by=caller.sub, at=workflow.now(), comment=request.comment)
        self._resolve(record)
        self._show()
        return record

    @resolve.validator
    def _validate_resolve(self, request: ResolveInput) -> None:
        self._check_responder(request)

    # --- state --------------------------------------------------------------------------------

    def _resolve(self, record: ResolveRecord) -> None:
        self.resolved = record
        self._set_state("resolved")
        metrics.observe_duration(metric_names.INCIDENT_TIME_TO_RESOLVE_SECONDS, "From an incident's start to its "
                                 "resolution.",
                                 metrics.since_start(), severity=self._severity())
        self._event(f"resolved by {record.by}" + (f": {record.comment}" if record.comment else ""))
        self._cancel_pages()

    def _severity(self) -> str:
        return self.request.severity if self.request else "unknown"

    def _set_state(self, state: State) -> None:
        self.state = state
        workflow.upsert_search_attributes([INCIDENT_STATE.value_set(state)])
        if state in ("acknowledged", "resolved") and audit.evented():
            audit.record_soon(audit.AuditEvent(event_id=audit.event_id("incident", state), kind=f"incident.{state}",
                                               data={"state": state}))

    def _cancel_pages(self) -> None:
        for task in self._paging:
            if not task.done():
                task.cancel()

    async def _resolve_when_quiet(self) -> None:
        """With the route's `auto_resolve_after`: resolve an Alertmanager incident whose group has
        not been notified for that long (alerts that vanish without a resolved notification)."""
        assert self.route is not None
        quiet_for = self.route.route.auto_resolve_after
        if quiet_for is None:
            return
        while self.state != "resolved":
            if self.last_notification_at is None:  # opened through the API: nothing to go quiet
                return
            seen = self.notifications
            remaining = self.last_notification_at + quiet_for - workflow.now()
            try:
                if remaining > timedelta(0):
                    await workflow.wait_condition(lambda: self.state == "resolved" or self.notifications != seen,
                                                  timeout=remaining)
                    continue
            except asyncio.TimeoutError:
                pass
            self._resolve(ResolveRecord(by="quiet period", at=workflow.now(),
                                        comment=f"Alertmanager has not repeated the group for {quiet_for}"))
            self._show()

    def _first_alert_at(self, opened_at: datetime) -> datetime:
        starts = [a.starts_at for a in self.alerts.values()]
        return min([opened_at, *starts])

    def _event(self, text: str) -> None:
        self.timeline.append(TimelineEntry(at=workflow.now(), event=text))

    def _view(self) -> IncidentView:
        assert self.request is not None
        alerts = sorted(self.alerts.values(), key=lambda a: a.starts_at)
        return IncidentView(
            title=self.request.title, severity=self.request.severity, service=self.request.service, state=self.state,
            route=self.route.route.name if self.route else None, alerts=alerts[-MAX_ALERTS_SHOWN:],
            alert_count=len(alerts), notifications=self.notifications, hypotheses=self.hypotheses, remediation=self.remediation, pages=self.pages,
            acknowledged=self.acknowledged, resolved=self.resolved, timeline=self.timeline,
        )

    def _show(self) -> None:
        """Publish the incident's view for the API (the run's memo); ApprovalsMixin publishes its own."""
        if self.request is not None:
            workflow.upsert_memo({MEMO_KEY: self._view().model_dump(mode="json")})


SPEC = WorkflowSpec(
    name=NAME,
    description="Incident response: alert intake, LLM root-cause analysis, paging on an escalation ladder, "
                "acknowledgement, approval-gated remediation, postmortem PDF.",
    workflow=IncidentResponseWorkflow,
    input_model=IncidentInput,
    output_model=IncidentResult,
    activities=(route_incident, run_llm_task, generate_postmortem, *CHANNEL_ACTIVITIES, *APPROVAL_ACTIVITIES),
    summary=summary_of,
    # No sample_input: an incident waits for people (acknowledge, resolve), so it cannot run
    # unattended; tests/fixtures/record_histories.py drives one through to its postmortem.
)

"""The postmortem: one PDF an incident leaves behind, in the compliance report's visual language.

Summary (times to acknowledge and to resolve), timeline, alerts, the root-cause records with model,
prompt hash and confidence, the remediation and its decision, every page (failed ones marked),
and who did what. Rendering is pure, like every report's: the same input gives the same bytes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from temporalio import activity

from activities.artifacts.store import ArtifactRef
from activities.incidents.models import IncidentView
from activities.llm.models import LlmCallRecord
from activities.reports.pdf import render_and_store, render_pdf
from activities.reports.text import MONO_CHARS_NARROW, ReportText, llm_calls, utc, when

POSTMORTEM_NAME = "postmortem.pdf"
POSTMORTEM_INVALID = "PostmortemInvalid"
TEMPLATE = "postmortem.typ"


class PostmortemInput(BaseModel):
    run_id: str
    tenant: str | None = Field(None, description="The run's tenant: the postmortem is encrypted under its key.")
    generated_at: datetime = Field(description="The workflow's clock: the same input renders the same PDF.")
    first_alert_at: datetime
    incident: IncidentView
    explanation: str | None = Field(None, description="The root-cause analysis's explanation.")
    llm_records: list[LlmCallRecord] = Field(default_factory=list)


def duration(span: timedelta | None) -> str:
    if span is None:
        return "—"
    seconds = int(span.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return " ".join(part for part in (f"{hours} h" if hours else "", f"{minutes} min" if hours or minutes else "",
                                      f"{seconds} s") if part)


def _summary(t: ReportText, request: PostmortemInput) -> dict[str, Any]:
    i = request.incident
    ack, res = i.acknowledged, i.resolved
    since = utc(request.first_alert_at)
    return {"rows": t.rows([
        [("Incident", t.styled(i.title, "strong"))],
        [("Service", i.service), ("Severity", t.styled(i.severity, i.severity))],
        [("Route", i.route or "—"), ("Alerts", str(i.alert_count))],
        [("First alert", when(request.first_alert_at)), ("State", t.styled(i.state, i.state))],
        [("Acknowledged", f"{when(ack.at)} by {ack.by}" if ack else "never")],
        [("Resolved", f"{when(res.at)} by {res.by}" if res else "not yet")],
        [("Time to acknowledge", duration(utc(ack.at) - since if ack else None)),
         ("Time to resolve", duration(utc(res.at) - since if res else None))],
    ])}


def _alerts(t: ReportText, request: PostmortemInput) -> list[list[Any]]:
    return [[t(a.name), t.styled(a.status, "failed" if a.status == "firing" else "resolved"), when(a.starts_at),
             when(a.ends_at), t.digest(a.fingerprint, width=MONO_CHARS_NARROW)] for a in request.incident.alerts]


def _remediation(t: ReportText, request: PostmortemInput) -> dict[str, Any] | None:
    r = request.incident.remediation
    if r is None:
        return None
    s = r.suggestion
    rows = [[("Suggested action", s.action if s else "none")]]
    if s:
        rows += [[("Rationale", s.rationale)], [("Risk", t.styled(s.risk, s.risk)), ("Status", r.status)]]
    else:
        rows += [[("Status", r.status)]]
    rows += [[("Decided by", ", ".join(r.decided_by) or "—"), ("Reason", r.reason or "—")]]
    if r.status_code is not None or r.error:
        rows.append([("Automation answered", str(r.status_code) if r.status_code is not None else r.error or "—")])
    return {"rows": t.rows(rows)}


def _pages(t: ReportText, request: PostmortemInput) -> list[list[Any]]:
    rows = []
    for page in request.incident.pages:
        channels = ", ".join(f"{d['channel']} ({'delivered' if d.get('delivered') else d.get('error_type') or 'failed'})"
                             for d in page.deliveries) or "—"
        outcome = "not sent (acknowledged)" if page.cancelled else "delivered" if page.delivered else "FAILED"
        rows.append([str(page.rung + 1), when(page.at), t(page.recipient), t(channels),
                     t.styled(outcome, "delivered" if page.delivered else "muted" if page.cancelled else "failed")])
    return rows


def _who(t: ReportText, request: PostmortemInput) -> list[str]:
    i = request.incident
    lines = []
    if i.acknowledged:
        via = "the link in a page" if i.acknowledged.via == "link" else "the API"
        lines.append(f"{i.acknowledged.by} acknowledged at {when(i.acknowledged.at)} through {via}."
                     + (f" “{i.acknowledged.comment}”" if i.acknowledged.comment else ""))
    if i.remediation and i.remediation.decided_by:
        lines.append(f"{', '.join(i.remediation.decided_by)} decided the remediation: {i.remediation.status}.")
    if i.resolved:
        lines.append(f"{i.resolved.by} resolved it at {when(i.resolved.at)}."
                     + (f" “{i.resolved.comment}”" if i.resolved.comment else ""))
    return [t(line) for line in lines]


def postmortem_data(request: PostmortemInput, fonts_dir: Path) -> dict[str, Any]:
    t = ReportText(fonts_dir)
    i = request.incident
    return {
        "title": t(f"Postmortem — {i.title}"),
        "subject": "Incident postmortem: timeline, alerts, root cause, remediation, pages and responders",
        "run_id": t(request.run_id),
        "generated_at": when(request.generated_at),
        "code_points_shown": t.shows_code_points(request.model_dump()),
        "incident": {"title": t(i.title), "severity": i.severity, "state": i.state},
        "summary": _summary(t, request),
        "timeline": [[when(e.at), t(e.event)] for e in i.timeline],
        "alerts": _alerts(t, request),
        "hypotheses": [{"cause": t(h.cause), "likelihood": f"{h.likelihood:.0%}",
                        "evidence": [t(e) for e in h.evidence]} for h in i.hypotheses],
        "explanation": t(request.explanation) if request.explanation else None,
        "llm": llm_calls(t, request.llm_records),
        "remediation": _remediation(t, request),
        "pages": _pages(t, request),
        "failed_pages": sum(1 for p in i.pages if not p.delivered and not p.cancelled),
        "who": _who(t, request),
    }


def render_postmortem(request: PostmortemInput, fonts_dir: Path) -> bytes:
    return render_pdf(TEMPLATE, postmortem_data(request, fonts_dir), created_at=utc(request.generated_at),
                      fonts_dir=fonts_dir)


# A plain `def`: rendering is CPU work, run in the worker's process pool (workers/cpu.py).
@activity.defn(name="generate-postmortem")
def generate_postmortem(request: PostmortemInput) -> ArtifactRef:
    ref = render_and_store(request.run_id, request.tenant, POSTMORTEM_NAME,
                           partial(render_postmortem, request), invalid=POSTMORTEM_INVALID)
    activity.logger.info("postmortem stored", extra={"bytes": ref.size, "sha256": ref.sha256})
    return ref

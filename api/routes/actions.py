"""Signed action links in messages (steward/action_links.py): today, acknowledging an incident
from the page that was sent to you.

GET /act/{token} shows what the link would do and changes nothing — mail scanners and link
previews follow links; only the form's POST acts. The token is the credential: it is bound to the
action, the run, the run's tenant and the person it was sent to, and it expires. Acting, the API
speaks for that person with a principal of the `action-link` role, which the workflow accepts as
naming the recipient (workflows/incident_response.py). Plain server-rendered HTML: no script.
"""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from temporalio.client import Client

from activities.incidents.models import AckInput, AckRecord, IncidentView
from api.errors import ApiError
from api.pages import page
from api.routes.incidents import respond
from api.run_records import describe_for_tenant
from steward.action_links import PATH, ActionClaim, InvalidActionLink, verify_action
from steward.identity import Principal
from workflows.incident_response import ACK_UPDATE, LINK_ROLE
from workflows.incident_response import MEMO_KEY as INCIDENT_MEMO_KEY

router = APIRouter(prefix=PATH, include_in_schema=False)

LINK_SUB = "action-link"


def _invalid(reason: str) -> HTMLResponse:
    return page("Link not valid", f"<p>{html.escape(reason.capitalize())}.</p>"
                                   "<p class=\"muted\">Ask for a new page, or respond through the API.</p>", 400)


async def _incident(client: Client, claim: ActionClaim) -> IncidentView | None:
    try:
        description = await describe_for_tenant(client, claim.run_id, claim.tenant)
    except ApiError:
        return None
    raw = (await description.memo()).get(INCIDENT_MEMO_KEY)
    return IncidentView.model_validate(raw) if raw else None


def _facts(incident: IncidentView) -> str:
    rows: list[tuple[str, Any]] = [("Incident", incident.title), ("Severity", incident.severity),
                                   ("Service", incident.service), ("State", incident.state)]
    if incident.hypotheses:
        rows.append(("Top hypothesis", f"{incident.hypotheses[0].cause} ({incident.hypotheses[0].likelihood:.0%})"))
    if incident.acknowledged:
        rows.append(("Acknowledged", f"by {incident.acknowledged.by} at {incident.acknowledged.at:%Y-%m-%d %H:%M} UTC"))
    return "<dl class=\"fields\">" + "".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in rows) + "</dl>"


def _claim(request: Request, token: str) -> ActionClaim:
    return verify_action(request.app.state.jwt_secret, token)


@router.get("/{token}", response_class=HTMLResponse)
async def show(token: str, request: Request) -> HTMLResponse:
    try:
        claim = _claim(request, token)
    except InvalidActionLink as exc:
        return _invalid(str(exc))
    incident = await _incident(request.app.state.client, claim)
    if incident is None:
        return _invalid("this incident no longer exists")
    if incident.state != "triggered":
        return page("Nothing to acknowledge", _facts(incident) + "<p>This incident needs no acknowledgement now.</p>")
    form = (f"<form method=\"post\" action=\"{PATH}/{html.escape(token, quote=True)}\">"
            f"<p>Acknowledging stops the paging for everyone and records that "
            f"<strong>{html.escape(claim.recipient)}</strong> is on it.</p>"
            "<div class=\"actions\"><button type=\"submit\" class=\"primary\">Acknowledge</button></div></form>")
    return page("Acknowledge the incident", _facts(incident) + form)


@router.post("/{token}", response_class=HTMLResponse)
async def act(token: str, request: Request) -> HTMLResponse:
    try:
        claim = _claim(request, token)
    except InvalidActionLink as exc:
        return _invalid(str(exc))
    principal = Principal(sub=LINK_SUB, roles=(LINK_ROLE,), tenant=claim.tenant)
    try:
        record = await respond(request.app.state.client, claim.run_id, principal, ACK_UPDATE,
                               AckInput(comment="acknowledged from the link in a page", link_recipient=claim.recipient),
                               AckRecord)
    except ApiError as exc:
        incident = await _incident(request.app.state.client, claim)
        facts = _facts(incident) if incident else ""
        return page("Not acknowledged", facts + f"<p>{html.escape(exc.message)}.</p>", 409 if exc.status == 409 else 400)
    return page("Acknowledged", f"<p>Thank you: the incident is acknowledged by <strong>{html.escape(record.by)}"
                                 f"</strong>, and the paging has stopped.</p>")

"""Activation links: a new customer's contact activates the account with the one-time token from
the welcome e-mail (steward/activation.py, workflows/customer_onboarding.py).

`POST /v1/activations/{token}` takes no bearer token: the token is the credential. The person
following the e-mail's link gets `GET /activate/{token}`, a page with one button that posts to
`POST /activate/{token}` — opening the link changes nothing, so a mail scanner that follows links
activates nothing. Every way a token can fail (malformed, unknown, used, expired, its run gone)
gets the same 404, so an answer teaches a guesser nothing. Requests are limited per client
address: no principal to count against, and each one costs the workflow engine a request.
"""

from __future__ import annotations

import html
from datetime import datetime
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.onboarding.models import ActivateInput, ActivationRecord
from api.deps import ClientDep
from api.errors import ApiError, ErrorResponse
from api.pages import page
from api.updates import execute_verified_update
from steward import search_attributes as sa
from steward.activation import PATH, InvalidActivationToken, run_id_of, token_digest
from steward.identity import Principal
from workflows.customer_onboarding import ACTIVATE_UPDATE, ACTIVATION_ROLE
from workflows.customer_onboarding import NAME as ONBOARDING_WORKFLOW

NOT_VALID = ApiError(404, "not_found", "this activation link is not valid: it is unknown, was already used, or expired")

router = APIRouter(tags=["activations"])
pages = APIRouter(prefix=PATH, include_in_schema=False)


class Activated(BaseModel):
    status: str = "activated"
    activated_at: datetime


async def activate(client: Client, token: str) -> ActivationRecord:
    """Hand the token's digest to the run it names, as the API vouching for the link; the run
    decides whether it is the link it sent, unused and unexpired."""
    try:
        run_id = run_id_of(token)
        description = await client.get_workflow_handle(run_id).describe()
    except InvalidActivationToken:
        raise NOT_VALID from None
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise NOT_VALID from None
        raise
    tenant = description.typed_search_attributes.get(sa.TENANT)
    if description.workflow_type != ONBOARDING_WORKFLOW or not tenant:
        raise NOT_VALID
    principal = Principal(sub="activation-link", roles=(ACTIVATION_ROLE,), tenant=tenant)
    return await execute_verified_update(
        client, description, principal, ACTIVATE_UPDATE, ActivateInput(token_sha256=token_digest(token)),
        ActivationRecord, forbidden=(), conflicts={}, closed=NOT_VALID,
    )


@router.post("/v1/activations/{token}", response_model=Activated,
             responses={code: {"model": ErrorResponse} for code in (404, 429, 503)})
async def activate_account(token: str, client: ClientDep) -> Activated:
    """Activate the account a welcome e-mail's token belongs to. No bearer token: the token is the credential."""
    record = await activate(client, token)
    return Activated(activated_at=record.activated_at)


@pages.get("/{token}", response_class=HTMLResponse)
async def show(token: str) -> HTMLResponse:
    form = (f"<form method=\"post\" action=\"{PATH}/{html.escape(token, quote=True)}\">"
            "<p>Activate your account to start using it. The link works once.</p>"
            "<div class=\"actions\"><button type=\"submit\" class=\"primary\">Activate</button></div></form>")
    return page("Activate your account", form)


@pages.post("/{token}", response_class=HTMLResponse)
async def act(token: str, request: Request) -> HTMLResponse:
    try:
        await activate(request.app.state.client, token)
    except ApiError as exc:
        if exc.status != 404:
            raise
        return page("Link not valid", "<p>This activation link is not valid: it is unknown, was already used, or "
                                      "expired.</p><p class=\"muted\">Ask the company that invited you for a new "
                                      "one.</p>", 404)
    return page("Account active", "<p>Thank you: your account is active.</p>")


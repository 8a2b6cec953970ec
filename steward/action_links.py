"""Signed links that let a person act on a run from a message: a page's "acknowledge" link.

A link is `<public url>/act/<token>`. The token is a JWT (HS256) under a key derived from the
platform secret for this purpose only, so a link is never an API credential and an API token never
opens an action page. It names the action, the run, the run's tenant and the person it was sent to,
and it expires. Opening the link (GET) only shows what it would do; acting takes a POST from that
page (api/routes/actions.py), so a mail scanner that follows links does nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import timedelta
from typing import Literal

import jwt
from pydantic import BaseModel, Field, ValidationError

ALGORITHM = "HS256"
AUDIENCE = "steward-action"
PATH = "/act"
# Long enough for an on-call engineer woken at night to reach a laptop; short enough that an old
# e-mail in an archive does not stay a lever on the incident.
DEFAULT_TTL = timedelta(hours=24)

Action = Literal["acknowledge"]


class InvalidActionLink(Exception):
    """The link is not one Steward issued, was altered, or has expired. The message says which."""


class ActionClaim(BaseModel):
    action: Action
    run_id: str = Field(max_length=300)
    tenant: str = Field(max_length=128)
    recipient: str = Field(max_length=320, description="Who the link was sent to: they act when it is used.")


def link_key(platform_secret: str) -> bytes:
    """A key used only for action links, derived so it differs from the JWT secret."""
    return hmac.new(platform_secret.encode(), b"steward action link v1", hashlib.sha256).digest()


def sign_action(platform_secret: str, claim: ActionClaim, *, ttl: timedelta = DEFAULT_TTL,
                now: float | None = None) -> str:
    issued_at = int(now if now is not None else time.time())
    body = {**claim.model_dump(), "aud": AUDIENCE, "iat": issued_at, "exp": issued_at + int(ttl.total_seconds())}
    return jwt.encode(body, link_key(platform_secret), algorithm=ALGORITHM)


def action_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}{PATH}/{token}"


def verify_action(platform_secret: str, token: str) -> ActionClaim:
    try:
        body = jwt.decode(token, link_key(platform_secret), algorithms=[ALGORITHM], audience=AUDIENCE,
                          options={"require": ["exp", "aud"]})
    except jwt.ExpiredSignatureError:
        raise InvalidActionLink("this link has expired") from None
    except jwt.InvalidTokenError:
        raise InvalidActionLink("this link is not valid") from None
    try:
        return ActionClaim.model_validate({k: body.get(k) for k in ActionClaim.model_fields})
    except ValidationError:
        raise InvalidActionLink("this link is not valid") from None

"""Who is calling: the principal, and the bearer JWTs that carry it.

A principal is (sub, roles, tenant). Steward issues HS256 tokens with the configured secret for
development and services (`steward token`); they have exactly the claims an external identity
provider would put in its tokens, so nothing downstream cares who signed them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from datetime import timedelta
from typing import Any

import jwt
from pydantic import BaseModel, ConfigDict, Field

ALGORITHM = "HS256"
# The roles Steward's default policy knows; `make up` prints a dev token for each.
DEFAULT_ROLES = ("requester", "approver", "auditor", "operator", "compliance_lead", "admin")
# Identifiers end up in Temporal visibility queries and search attributes: keep them to a
# charset that needs no quoting anywhere.
IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$"
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)
_TTL = re.compile(r"^(\d+)([smhd])$")
_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_TTL = timedelta(days=30)


class InvalidToken(Exception):
    """The bearer token cannot be trusted; the message says why without echoing the token."""


class Principal(BaseModel):
    model_config = ConfigDict(frozen=True)

    sub: str = Field(pattern=IDENTIFIER_PATTERN)
    roles: tuple[str, ...] = Field(min_length=1)
    tenant: str = Field(pattern=IDENTIFIER_PATTERN)
    groups: tuple[str, ...] = Field(default=(), description="Named groups, from the optional groups claim.")


def parse_ttl(text: str) -> timedelta:
    """'90s', '30m', '8h', '7d' → timedelta, at most MAX_TTL."""
    match = _TTL.match(text.strip())
    if not match:
        raise ValueError(f"ttl {text!r} must look like 90s, 30m, 8h or 7d")
    ttl = timedelta(seconds=int(match.group(1)) * _TTL_UNITS[match.group(2)])
    if not timedelta(0) < ttl <= MAX_TTL:
        raise ValueError(f"ttl {text!r} must be more than 0 and at most {MAX_TTL.days} days")
    return ttl


def issue_token(secret: str, principal: Principal, ttl: timedelta, *, now: float | None = None) -> str:
    issued_at = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "sub": principal.sub,
        "roles": list(principal.roles),
        "tenant": principal.tenant,
        "iat": issued_at,
        "exp": issued_at + int(ttl.total_seconds()),
    }
    if principal.groups:
        claims["groups"] = list(principal.groups)
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(token: str, secret: str) -> Principal:
    """Check signature and expiry, then the claims' shape; raise InvalidToken otherwise."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp", "iat"]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise InvalidToken(f"token is not valid: {exc}") from None
    roles = claims.get("roles")
    tenant = claims.get("tenant")
    if not isinstance(roles, list) or not roles or not all(isinstance(r, str) for r in roles):
        raise InvalidToken("token has no roles claim (a non-empty list of strings)")
    if not isinstance(tenant, str) or not _IDENTIFIER.match(tenant):
        raise InvalidToken("token has no valid tenant claim")
    if not isinstance(claims["sub"], str) or not _IDENTIFIER.match(claims["sub"]):
        raise InvalidToken("token has no valid sub claim")
    groups = claims.get("groups", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise InvalidToken("token's groups claim is not a list of strings")
    return Principal(sub=claims["sub"], roles=tuple(roles), tenant=tenant, groups=tuple(groups))


# --- Signed identity assertions: how a verified principal travels to a workflow ---------------
#
# The API verifies the caller's token, then attaches an assertion of who the caller is to the
# Temporal request, signed with a key derived from the platform secret. It is bound to one
# workflow and one update id, so a copy lifted from history cannot vouch for another decision.
# It carries no bearer credential: holding one grants nothing at the API.

ASSERTION_VERSION = 1


def assertion_key(platform_secret: str) -> bytes:
    """A key used only for identity assertions, derived so it differs from the JWT secret."""
    return hmac.new(platform_secret.encode(), b"steward identity assertion v1", hashlib.sha256).digest()


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign_assertion(key: bytes, principal: Principal, *, workflow_id: str, update_id: str | None) -> dict[str, Any]:
    body = {"v": ASSERTION_VERSION, "principal": principal.model_dump(mode="json"),
            "workflow_id": workflow_id, "update_id": update_id}
    return {**body, "sig": hmac.new(key, _canonical(body), hashlib.sha256).hexdigest()}


def verify_assertion(key: bytes, assertion: Any, *, workflow_id: str, update_id: str | None) -> Principal | None:
    """The asserted principal when signature and binding check out; None otherwise."""
    if not isinstance(assertion, dict) or not isinstance(assertion.get("sig"), str):
        return None
    body = {k: v for k, v in assertion.items() if k != "sig"}
    expected = hmac.new(key, _canonical(body), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, assertion["sig"]):
        return None
    if body.get("v") != ASSERTION_VERSION or body.get("workflow_id") != workflow_id or body.get("update_id") != update_id:
        return None
    return principal_of(assertion)


def principal_of(assertion: Any) -> Principal | None:
    """The principal an assertion names, without checking it (only for already-verified ones)."""
    try:
        return Principal.model_validate(assertion["principal"])
    except (KeyError, TypeError, ValueError):
        return None

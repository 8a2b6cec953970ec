"""Who is calling: the principal, and the bearer JWTs that carry it.

A principal is (sub, roles, tenant). Steward issues HS256 tokens with the configured secret for
development and services (`steward token`); they have exactly the claims an external identity
provider would put in its tokens, so nothing downstream cares who signed them.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta

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
    claims = {
        "sub": principal.sub,
        "roles": list(principal.roles),
        "tenant": principal.tenant,
        "iat": issued_at,
        "exp": issued_at + int(ttl.total_seconds()),
    }
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
    return Principal(sub=claims["sub"], roles=tuple(roles), tenant=tenant)

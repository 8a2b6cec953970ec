"""Who is calling: the principal, and the bearer JWTs that carry it.

A principal is (sub, roles, tenant). Steward issues HS256 tokens with the configured secret for
development and services (`steward token`); they have exactly the claims an external identity
provider would put in its tokens, so nothing downstream cares who signed them. An identity
provider's RS256/ES256 tokens are verified with the keys it publishes at its JWKS URL
(`TokenVerifier`, `JwksKeys`). docs/security.md is the reference.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import jwt
from pydantic import BaseModel, ConfigDict, Field

from steward.claims import DEFAULT_MAPPING, SUBJECT_PATTERN, TENANT_PATTERN, ClaimMapping
from steward.logs import get_logger

ALGORITHM = "HS256"
# The algorithm is read from the token's header, but only chosen within the kind of key that
# verifies it: the local secret verifies HS256 and nothing else, an identity provider's keys
# RS256/ES256 and nothing else. So an RSA public key, which anyone can download, can never be
# used as an HMAC secret (the classic key-confusion forgery), and `alg: none` matches no key.
JWKS_ALGORITHMS = ("RS256", "ES256")
# An identity provider that does not answer within this long is down for this request; the
# caller gets a 401 saying so rather than a hung request.
JWKS_TIMEOUT_S = 5.0
# A token naming an unknown kid refetches the JWKS (the provider may have rotated keys), but at
# most once per this many seconds: a flood of made-up kids must not become a flood of fetches.
JWKS_UNKNOWN_KID_REFETCH_S = 30.0
# After a failed fetch, requests answer from what is cached for this long instead of each
# waiting on a provider that just failed.
JWKS_FAILURE_BACKOFF_S = 5.0
# The roles Steward's default policy knows; `make up` prints a dev token for each.
DEFAULT_ROLES = ("requester", "approver", "auditor", "operator", "compliance_lead", "incident_commander", "admin")
# Identifiers end up in Temporal visibility queries and search attributes: keep them to a
# charset that needs no quoting anywhere (steward/claims.py says what each may hold).
IDENTIFIER_PATTERN = TENANT_PATTERN
_TTL = re.compile(r"^(\d+)([smhd])$")
_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_TTL = timedelta(days=30)

log = get_logger(__name__)


class InvalidToken(Exception):
    """The bearer token cannot be trusted; the message says why without echoing the token."""


class Principal(BaseModel):
    model_config = ConfigDict(frozen=True)

    sub: str = Field(pattern=SUBJECT_PATTERN)
    roles: tuple[str, ...] = Field(min_length=1)
    tenant: str = Field(pattern=TENANT_PATTERN)
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


def verify_token(token: str, secret: str, *, leeway_s: float = 0) -> Principal:
    """Check an HS256 token's signature and times, then the claims' shape; raise InvalidToken otherwise."""
    return _principal(_decode(token, secret, ALGORITHM, leeway_s=leeway_s))


def _header(token: str) -> dict[str, Any]:
    try:
        return jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise InvalidToken(f"token is not valid: {exc}") from None


def _decode(token: str, key: Any, algorithm: str, *, leeway_s: float,
            issuer: str | None = None, audience: str | None = None) -> dict[str, Any]:
    try:
        return jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            issuer=issuer,
            audience=audience,
            leeway=leeway_s,
            # nbf is checked whenever present; iss and aud are required only when configured.
            options={"require": ["sub", "exp", "iat", *(["iss"] if issuer else []), *(["aud"] if audience else [])]},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token has expired") from None
    except jwt.ImmatureSignatureError:
        raise InvalidToken("token is not valid yet (nbf or iat in the future)") from None
    except jwt.InvalidIssuerError:
        raise InvalidToken("token issuer is not accepted") from None
    except jwt.InvalidAudienceError:
        raise InvalidToken("token audience is not accepted") from None
    except jwt.InvalidTokenError as exc:
        raise InvalidToken(f"token is not valid: {exc}") from None


def _principal(claims: dict[str, Any], mapping: ClaimMapping = DEFAULT_MAPPING) -> Principal:
    """The principal a verified token's claims name, where `mapping` says to find it; raises
    ClaimsRefused (a 403: the caller is authenticated) when they do not name one."""
    return Principal(sub=mapping.subject_of(claims), roles=mapping.roles_of(claims),
                     tenant=mapping.tenant_of(claims), groups=mapping.groups_of(claims))


class JwksKeys:
    """An identity provider's signing keys, fetched from its JWKS URL and cached by kid.

    Fetched with httpx's async client, so a slow provider never blocks the event loop; concurrent
    requests share one fetch. Keys are trusted for `cache_s`; a kid not in the cache refetches
    once (the provider may have rotated), at most once per JWKS_UNKNOWN_KID_REFETCH_S.
    """

    def __init__(self, url: str, cache_s: float, *, timeout_s: float = JWKS_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.cache_s = cache_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._unknown_kid_fetch_at: float | None = None
        self._failed_at: float | None = None
        self._failure = ""
        self._lock = asyncio.Lock()

    async def get(self, kid: str) -> jwt.PyJWK:
        async with self._lock:
            now = self._clock()
            if self._refresh_due(kid, now):
                await self._refresh(now)
        key = self._keys.get(kid)
        if key is None:
            raise InvalidToken(self._failure or f"token key id {kid[:64]!r} is not among the identity provider's keys")
        return key

    def _refresh_due(self, kid: str, now: float) -> bool:
        if self._failed_at is not None and now - self._failed_at < JWKS_FAILURE_BACKOFF_S:
            return False
        if self._fetched_at is None or now - self._fetched_at >= self.cache_s:
            return True
        last = self._unknown_kid_fetch_at
        if kid not in self._keys and (last is None or now - last >= min(JWKS_UNKNOWN_KID_REFETCH_S, self.cache_s)):
            self._unknown_kid_fetch_at = now
            return True
        return False

    async def _refresh(self, now: float) -> None:
        try:
            self._keys = await self._fetch()
        except InvalidToken as exc:
            # The keys fetched before stay in use: a provider's blip should not sign everybody out.
            self._failed_at, self._failure = now, str(exc)
            log.warning("jwks fetch failed", url=self.url, error=str(exc), cached_kids=sorted(self._keys))
            return
        self._fetched_at, self._failed_at, self._failure = now, None, ""

    async def _fetch(self) -> dict[str, jwt.PyJWK]:
        import httpx  # here, not at the top: workflows import this module and never fetch

        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                response = await client.get(self.url, headers={"Accept": "application/json"})
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise InvalidToken(
                f"cannot verify the token: the identity provider's keys (JWKS) could not be fetched "
                f"({type(exc).__name__})"
            ) from None
        keys: dict[str, jwt.PyJWK] = {}
        for raw in document.get("keys", []) if isinstance(document, dict) else []:
            if not isinstance(raw, dict) or not isinstance(raw.get("kid"), str) or raw.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(raw)
            except jwt.PyJWTError:
                continue  # a key type we do not use (or cannot build) verifies nothing
            if key.algorithm_name in JWKS_ALGORITHMS:
                keys[raw["kid"]] = key
        log.info("jwks fetched", url=self.url, kids=sorted(keys))
        return keys


class TokenVerifier:
    """Verifies a bearer JWT: HS256 with the local secret, RS256/ES256 with the provider's JWKS."""

    def __init__(self, secret: str, *, jwks: JwksKeys | None = None, issuer: str | None = None,
                 audience: str | None = None, leeway_s: float = 0, mapping: ClaimMapping = DEFAULT_MAPPING) -> None:
        self.secret = secret
        self.jwks = jwks
        self.mapping = mapping  # the identity provider's claims; Steward's own tokens use the defaults
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s

    async def verify(self, token: str) -> Principal:
        header = _header(token)
        algorithm = header.get("alg")
        if algorithm == ALGORITHM:
            # Steward's own tokens: iss/aud describe the identity provider, not them.
            return verify_token(token, self.secret, leeway_s=self.leeway_s)
        if algorithm not in JWKS_ALGORITHMS or self.jwks is None:
            raise InvalidToken(f"token algorithm {algorithm!r} is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidToken("token has no key id (kid) in its header")
        key = await self.jwks.get(kid)
        # A kid names one key of one type: an RS256 token must be checked with an RSA key.
        if key.algorithm_name != algorithm:
            raise InvalidToken(f"token algorithm {algorithm!r} does not match its key {kid[:64]!r}")
        claims = _decode(token, key.key, algorithm, leeway_s=self.leeway_s,
                         issuer=self.issuer, audience=self.audience)
        return _principal(claims, self.mapping)


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

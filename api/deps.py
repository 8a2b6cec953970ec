"""Dependencies every route shares: settings, the Temporal client, the catalog, the caller.

`CurrentPrincipal` is the single place a request's identity is established: a bearer JWT
(HS256 with the local secret, or RS256/ES256 from the identity provider's JWKS) or a Steward API
key (`stw_...`). Authorization is `require(action)`: a dependency that takes a CurrentPrincipal
and checks the role-based policy (policies/rbac.yaml), answering 403 naming the missing permission.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import Client

from activities.artifacts.store import ArtifactStore
from activities.audit.log import AuditLog
from activities.events.subscriptions import SubscriptionStore
from api.errors import ApiError
from api.metrics import ApiMetrics
from api.paging import PageTokens
from policies import rbac
from steward import apikeys
from steward.claims import ClaimMapping, ClaimsRefused
from steward.codec import set_encrypting_for
from steward.identity import InvalidToken, JwksKeys, Principal, TokenVerifier
from steward.logs import get_logger
from steward.settings import Settings
from workflows.catalog import Catalog

_bearer = HTTPBearer(auto_error=False, description="A JWT (`steward token --help`) or an API key (`steward apikey`).")
# For routes that take a credential only sometimes (/metrics, open on loopback).
OptionalBearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
_CHALLENGE = {"WWW-Authenticate": "Bearer"}

log = get_logger(__name__)


# Every dependency is async: FastAPI runs sync ones in a thread pool, a hop per dependency per
# request that the benchmark measured at ~4 ms of CPU on a busy 2-core machine.
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_client(request: Request) -> Client:
    return request.app.state.client


async def get_catalog(request: Request) -> Catalog:
    return request.app.state.catalog


async def get_page_tokens(request: Request) -> PageTokens:
    return request.app.state.page_tokens


async def get_artifacts(request: Request) -> ArtifactStore:
    return request.app.state.artifacts


async def get_audit(request: Request) -> AuditLog:
    return request.app.state.audit


async def get_subscriptions(request: Request) -> SubscriptionStore:
    return request.app.state.subscriptions


async def get_metrics(request: Request) -> ApiMetrics:
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
ArtifactsDep = Annotated[ArtifactStore, Depends(get_artifacts)]
AuditDep = Annotated[AuditLog, Depends(get_audit)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]
SubscriptionsDep = Annotated[SubscriptionStore, Depends(get_subscriptions)]
PageTokensDep = Annotated[PageTokens, Depends(get_page_tokens)]
ClientDep = Annotated[Client, Depends(get_client)]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]


def _token_verifier(app: FastAPI) -> TokenVerifier:
    """The app's verifier, built on first use: its JWKS cache must live as long as the app."""
    verifier = getattr(app.state, "token_verifier", None)
    if verifier is None:
        settings: Settings = app.state.settings
        jwks = JwksKeys(settings.jwks_url, settings.jwks_cache_s) if settings.jwks_url else None
        verifier = app.state.token_verifier = TokenVerifier(
            app.state.jwt_secret, jwks=jwks, issuer=settings.jwt_issuer, audience=settings.jwt_audience,
            leeway_s=settings.jwt_leeway_s, mapping=ClaimMapping.from_settings(settings),
        )
    return verifier


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise ApiError(401, "unauthenticated", "a bearer token is required", headers=_CHALLENGE)
    return await principal_from_token(request, credentials.credentials)


# Async also keeps the log context bound here on the request's own task.
async def principal_from_token(request: Request, token: str) -> Principal:
    """The principal a bearer credential (JWT or API key) names, or 401. For routes that take
    the credential from somewhere other than the Authorization header (the /codec session)."""
    try:
        if apikeys.looks_like_key(token):
            principal = apikeys.store(request.app.state.settings.api_keys_path).verify(token)
        else:
            principal = await _token_verifier(request.app).verify(token)
    except InvalidToken as exc:
        raise ApiError(401, "unauthenticated", str(exc), headers=_CHALLENGE) from None
    except ClaimsRefused as exc:
        # Authenticated, so not a 401: the token is good but does not say who the caller is here.
        log.info("token refused: incomplete identity", claim=exc.claim)
        raise ApiError(403, "forbidden", str(exc), {"claim": exc.claim}) from None
    settings: Settings = request.app.state.settings
    policy = rbac.load(settings.rbac_policy)
    if not any(role in policy.roles for role in principal.roles):
        log.info("token refused: no known role", roles=list(principal.roles)[:10])
        raise ApiError(403, "forbidden", "the token names no role Steward knows "
                       f"({', '.join(sorted(policy.roles))})", {"claim": settings.jwt_roles_claim})
    structlog.contextvars.bind_contextvars(principal=principal.sub, tenant=principal.tenant)
    # Whatever this request writes to Temporal (a run's input, an update, a schedule) is the
    # caller's tenant's, encrypted under its key (steward/codec.py).
    set_encrypting_for(principal.tenant)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def get_rbac(request: Request) -> rbac.RbacPolicy:
    # Loaded (and validated) once per process; rbac.check_startup loads it at start-up.
    return rbac.load(request.app.state.settings.rbac_policy)


RbacDep = Annotated[rbac.RbacPolicy, Depends(get_rbac)]


def authorize(policy: rbac.RbacPolicy, principal: Principal, action: str) -> None:
    """403 naming the permission unless the caller's roles allow `action`."""
    if not policy.allows(principal.roles, action):
        log.info("permission denied", permission=action, roles=list(principal.roles))
        raise ApiError(403, "forbidden", f"missing permission {action}", {"permission": action})


def require(action: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency giving the caller when they may take `action`:
    `caller: Annotated[Principal, Depends(require("runs:cancel"))]`."""
    if not rbac.is_known(action):
        raise ValueError(f"{action!r} is not an action policies/rbac.py knows")

    async def permitted(principal: CurrentPrincipal, policy: RbacDep) -> Principal:
        authorize(policy, principal, action)
        return principal

    return permitted

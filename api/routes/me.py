"""`GET /v1/me`: who the API takes the caller to be, after the identity provider's claims are
mapped (STEWARD_JWT_*_CLAIM, STEWARD_JWT_ROLE_MAP): the first thing to check when setting up a
provider (docs/identity-providers.md), and what a client shows as the signed-in user."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import CurrentPrincipal, RbacDep
from api.errors import ErrorResponse

router = APIRouter(tags=["identity"])

_ERRORS = {code: {"model": ErrorResponse} for code in (401, 403, 429)}


class Me(BaseModel):
    sub: str
    tenant: str
    roles: list[str] = Field(description="Steward roles, after STEWARD_JWT_ROLE_MAP.")
    groups: list[str] = Field(description="Approval groups, from the groups claim.")
    unknown_roles: list[str] = Field(description="Roles the token names that the RBAC policy does not have: they "
                                                 "grant nothing.")


@router.get("/v1/me", response_model=Me, responses=_ERRORS, summary="The caller, as the API sees them")
async def me(principal: CurrentPrincipal, policy: RbacDep) -> Me:
    return Me(sub=principal.sub, tenant=principal.tenant, roles=list(principal.roles), groups=list(principal.groups),
              unknown_roles=[role for role in principal.roles if role not in policy.roles])

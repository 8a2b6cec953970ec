"""Where a verified token's claims put the caller: subject, tenant, roles and groups.

Identity providers do not agree on claim names. Keycloak puts realm roles in
`realm_access.roles`, Entra ID the tenant in `tid` and app roles in `roles`, Auth0 custom claims
under a namespace URL, Okta group names in `groups`. `ClaimMapping` says where each is (a claim
name, or a dotted path into nested objects) and, optionally, how the provider's role or group
names and tenant ids translate into Steward's. The defaults are Steward's own claims, so its own
tokens (`steward token`) need no mapping. docs/identity-providers.md has a recipe per provider.

A token whose signature and times are good but which does not say who the caller is in
Steward's terms (no subject, no tenant, no role Steward knows) is refused with `ClaimsRefused`,
a 403 naming the claim: it is authenticated, and never given a default tenant or role.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from steward.settings import Settings

# Tenants end up in object keys, file names and visibility queries: a charset that needs no
# quoting anywhere. Subjects also appear in queries and memos, never in paths, and providers use
# `|` (Auth0's `auth0|64f...`) and `_` in them.
TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$"
SUBJECT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@:|_-]{0,127}$"
_TENANT = re.compile(TENANT_PATTERN)
_SUBJECT = re.compile(SUBJECT_PATTERN)
_ABSENT = object()


class ClaimsRefused(Exception):
    """A verified token that does not name the caller in Steward's terms; `claim` is the claim
    (as configured) that is missing or unusable."""

    def __init__(self, message: str, claim: str) -> None:
        super().__init__(message)
        self.claim = claim


def claim_value(claims: Mapping[str, Any], path: str) -> Any:
    """The value at `path`: the claim of exactly that name if there is one (Auth0's namespaced
    `https://steward.example.com/roles` has dots of its own), else a dotted path into nested
    objects (`realm_access.roles`). `_ABSENT` when neither exists."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _ABSENT
        value = value[part]
    return value


def _strings(value: Any) -> list[str] | None:
    """A list of strings, or a single space-separated string as some providers send (`scope`)."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


@dataclass(frozen=True)
class ClaimMapping:
    subject: str = "sub"
    tenant: str = "tenant"
    roles: str = "roles"
    groups: str = "groups"
    # Provider role or group name -> Steward roles. When set, only mapped names count.
    role_map: Mapping[str, tuple[str, ...]] | None = None
    # Provider tenant id -> Steward tenant. When set, an unmapped tenant is refused.
    tenant_map: Mapping[str, str] | None = field(default=None)

    @classmethod
    def from_settings(cls, settings: Settings) -> ClaimMapping:
        return cls(
            subject=settings.jwt_subject_claim, tenant=settings.jwt_tenant_claim, roles=settings.jwt_roles_claim,
            groups=settings.jwt_groups_claim,
            role_map={k: tuple(v) for k, v in settings.jwt_role_map.items()} if settings.jwt_role_map else None,
            tenant_map=dict(settings.jwt_tenant_map) if settings.jwt_tenant_map else None,
        )

    def subject_of(self, claims: Mapping[str, Any]) -> str:
        value = claim_value(claims, self.subject)
        if value is _ABSENT:
            raise ClaimsRefused(f"the token has no {self.subject} claim naming the caller", self.subject)
        if not isinstance(value, str) or not _SUBJECT.match(value):
            raise ClaimsRefused(f"the token's {self.subject} claim is not a usable subject "
                                "(letters, digits and . _ @ : | -, at most 128)", self.subject)
        return value

    def tenant_of(self, claims: Mapping[str, Any]) -> str:
        value = claim_value(claims, self.tenant)
        if value is _ABSENT or value in ("", None):
            raise ClaimsRefused(f"the token has no {self.tenant} claim naming the caller's tenant", self.tenant)
        if not isinstance(value, str):
            raise ClaimsRefused(f"the token's {self.tenant} claim is not a string", self.tenant)
        if self.tenant_map is not None:
            if value not in self.tenant_map:
                raise ClaimsRefused(f"the token's {self.tenant} claim names a tenant Steward does not map "
                                    "(STEWARD_JWT_TENANT_MAP)", self.tenant)
            value = self.tenant_map[value]
        if not _TENANT.match(value):
            raise ClaimsRefused(f"the token's {self.tenant} claim is not a usable tenant id "
                                "(letters, digits and . @ : -, at most 128)", self.tenant)
        return value

    def roles_of(self, claims: Mapping[str, Any]) -> tuple[str, ...]:
        value = claim_value(claims, self.roles)
        names = [] if value is _ABSENT else _strings(value)
        if names is None:
            raise ClaimsRefused(f"the token's {self.roles} claim is not a list of strings", self.roles)
        if self.role_map is not None:
            names = [role for name in names for role in self.role_map.get(name, ())]
        roles = tuple(dict.fromkeys(names))
        if not roles:
            raise ClaimsRefused(f"the token's {self.roles} claim names no Steward role"
                                + (" (none is mapped by STEWARD_JWT_ROLE_MAP)" if self.role_map is not None else ""),
                                self.roles)
        return roles

    def groups_of(self, claims: Mapping[str, Any]) -> tuple[str, ...]:
        value = claim_value(claims, self.groups)
        if value is _ABSENT:
            return ()
        names = _strings(value)
        if names is None:
            raise ClaimsRefused(f"the token's {self.groups} claim is not a list of strings", self.groups)
        return tuple(names)


DEFAULT_MAPPING = ClaimMapping()

"""The recipes of docs/identity-providers.md, each tested with tokens shaped like that provider's:
RS256, signed by a key whose JWKS a real local HTTP server publishes, with the claims where the
provider puts them, mapped by the recipe's settings. And the refusals: a token that is genuine but
does not name a tenant or a role Steward knows is a 403 naming the claim, never a default."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from policies.loader import PolicyError
from policies.rbac import check_startup
from steward.claims import ClaimMapping, ClaimsRefused, claim_value
from tests.support import free_port, serve_api
from tests.test_auth_providers import IdentityProvider, SigningKey, bearer

AUDIENCE = "api://steward"
KEY = SigningKey("idp-rsa", "RS256")
ENTRA_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
AUTH0_NAMESPACE = "https://steward.example.com"

# Each provider: its issuer, the recipe's settings, a token's claims as that provider writes them,
# and who Steward must take the caller to be.
RECIPES: dict[str, dict[str, Any]] = {
    "keycloak": {
        "issuer": "https://sso.example.com/realms/acme",
        "settings": {"jwt_roles_claim": "realm_access.roles",
                     "jwt_role_map": {"steward-approver": ["approver"], "steward-operator": ["operator"]}},
        "claims": {"sub": "5f1c7e2a-3b4d-4e8f-9a0b-1c2d3e4f5a6b", "azp": "steward", "typ": "Bearer",
                   "preferred_username": "vera", "tenant": "acme",
                   "realm_access": {"roles": ["offline_access", "uma_authorization", "steward-approver"]},
                   "resource_access": {"account": {"roles": ["manage-account"]}}},
        "expected": ("5f1c7e2a-3b4d-4e8f-9a0b-1c2d3e4f5a6b", "acme", ["approver"], []),
    },
    "entra-id": {
        "issuer": f"https://login.microsoftonline.com/{ENTRA_TENANT}/v2.0",
        "settings": {"jwt_subject_claim": "oid", "jwt_tenant_claim": "tid",
                     "jwt_tenant_map": {ENTRA_TENANT: "acme"},
                     "jwt_role_map": {"Steward.Approver": ["approver"], "Steward.Admin": ["admin"]}},
        "claims": {"oid": "00000000-0000-0000-66f3-3332eca7ea81", "tid": ENTRA_TENANT, "ver": "2.0",
                   "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", "azp": "d3590ed6-52b3-4102-aeff-aad2292ab01c",
                   "roles": ["Steward.Approver"], "groups": ["a5b2c6d0-1e2f-4a3b-8c4d-5e6f7a8b9c0d"],
                   "name": "Vera Approver", "preferred_username": "vera@acme.example"},
        "expected": ("00000000-0000-0000-66f3-3332eca7ea81", "acme", ["approver"],
                     ["a5b2c6d0-1e2f-4a3b-8c4d-5e6f7a8b9c0d"]),
    },
    "auth0": {
        "issuer": "https://acme.eu.auth0.com/",
        "settings": {"jwt_roles_claim": f"{AUTH0_NAMESPACE}/roles", "jwt_tenant_claim": "org_id",
                     "jwt_tenant_map": {"org_9ybsU1dN2dKfDkBi": "acme"}},
        "claims": {"sub": "auth0|64f1c2d3e4b5a6978899aabb", "org_id": "org_9ybsU1dN2dKfDkBi",
                   f"{AUTH0_NAMESPACE}/roles": ["approver", "requester"], "scope": "openid profile",
                   "permissions": ["read:runs"], "gty": "password"},
        "expected": ("auth0|64f1c2d3e4b5a6978899aabb", "acme", ["approver", "requester"], []),
    },
    "okta": {
        "issuer": "https://acme.okta.com/oauth2/default",
        "settings": {"jwt_roles_claim": "groups", "jwt_groups_claim": "groups",
                     "jwt_role_map": {"Steward Approvers": ["approver"], "Steward Auditors": ["auditor"]}},
        "claims": {"sub": "00u1a2b3c4D5e6F7g8h9", "uid": "00u1a2b3c4D5e6F7g8h9", "cid": "0oa1b2c3d4e5f6g7h8i9",
                   "scp": ["openid"], "tenant": "acme", "groups": ["Everyone", "Steward Approvers"]},
        "expected": ("00u1a2b3c4D5e6F7g8h9", "acme", ["approver"], ["Everyone", "Steward Approvers"]),
    },
}


def token(recipe: dict[str, Any], **changes: Any) -> str:
    now = int(time.time())
    claims = {**recipe["claims"], "iss": recipe["issuer"], "aud": AUDIENCE, "iat": now, "exp": now + 300, **changes}
    return KEY.sign({k: v for k, v in claims.items() if v is not None})


@pytest.fixture(scope="module")
def provider() -> Iterator[IdentityProvider]:
    with IdentityProvider(KEY).running() as idp:
        yield idp


@asynccontextmanager
async def api_for(settings, client, provider: IdentityProvider,
                  recipe: dict[str, Any]) -> AsyncIterator[httpx.AsyncClient]:
    own = settings.model_copy(update={"api_port": free_port(), "jwks_url": provider.url, "jwt_issuer": recipe["issuer"],
                                      "jwt_audience": AUDIENCE, **recipe["settings"]})
    check_startup(own)  # the recipe's role map names roles the policy has
    async with serve_api(own, client) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        yield http


@pytest.mark.parametrize("name", RECIPES)
async def test_each_providers_token_names_the_caller_through_its_recipe(settings, client, provider, name):
    recipe = RECIPES[name]
    async with api_for(settings, client, provider, recipe) as http:
        me = await http.get("/v1/me", headers=bearer(token(recipe)))
        assert me.status_code == 200, me.text
        body = me.json()
        assert (body["sub"], body["tenant"], body["roles"], body["groups"]) == recipe["expected"]
        assert body["unknown_roles"] == []
        # The mapped roles are the ones that authorize: an approver may read the inbox.
        assert (await http.get("/v1/approvals", headers=bearer(token(recipe)))).status_code == 200


@pytest.mark.parametrize(("name", "removed", "claim"), [
    ("keycloak", "tenant", "tenant"),
    ("entra-id", "tid", "tid"),
    ("auth0", "org_id", "org_id"),
    ("okta", "tenant", "tenant"),
])
async def test_a_token_without_a_tenant_is_403_naming_the_claim_never_a_default(settings, client, provider, name,
                                                                                removed, claim):
    recipe = RECIPES[name]
    async with api_for(settings, client, provider, recipe) as http:
        refused = await http.get("/v1/me", headers=bearer(token(recipe, **{removed: None})))
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "forbidden" and error["details"] == {"claim": claim} and claim in error["message"]


async def test_a_tenant_the_map_does_not_know_is_refused(settings, client, provider):
    recipe = RECIPES["entra-id"]
    async with api_for(settings, client, provider, recipe) as http:
        refused = await http.get("/v1/me", headers=bearer(token(recipe, tid="11111111-2222-3333-4444-555555555555")))
    assert refused.status_code == 403 and refused.json()["error"]["details"] == {"claim": "tid"}
    assert "STEWARD_JWT_TENANT_MAP" in refused.json()["error"]["message"]


@pytest.mark.parametrize(("name", "roles_claim"), [
    ("keycloak", {"realm_access": {"roles": ["offline_access", "uma_authorization"]}}),  # nothing mapped
    ("okta", {"groups": ["Everyone"]}),
    ("auth0", {f"{AUTH0_NAMESPACE}/roles": ["intern"]}),  # no map: a name the policy does not have
])
async def test_a_token_with_no_known_role_is_403_naming_the_roles_claim(settings, client, provider, name,
                                                                        roles_claim):
    recipe = RECIPES[name]
    async with api_for(settings, client, provider, recipe) as http:
        refused = await http.get("/v1/me", headers=bearer(token(recipe, **roles_claim)))
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert error["details"] == {"claim": recipe["settings"]["jwt_roles_claim"]}
    assert "role" in error["message"]


def test_a_role_map_naming_a_role_the_policy_lacks_stops_start_up(settings):
    with pytest.raises(PolicyError, match="approvers"):
        check_startup(settings.model_copy(update={"jwt_role_map": {"Steward.Approver": ["approvers"]}}))


@pytest.mark.parametrize("sub", ["auth0|64f1c2d3e4b5", "google-oauth2|1180", "svc_ci.pipeline@acme"])
def test_subjects_as_providers_write_them_are_accepted(sub):
    assert ClaimMapping().subject_of({"sub": sub}) == sub


def test_claim_paths_read_namespaced_names_whole_and_dotted_paths_into_objects():
    claims = {f"{AUTH0_NAMESPACE}/tenant": "acme", "realm_access": {"roles": ["a"]}, "a.b": 1, "a": {"b": 2}}
    assert claim_value(claims, f"{AUTH0_NAMESPACE}/tenant") == "acme"
    assert claim_value(claims, "realm_access.roles") == ["a"]
    assert claim_value(claims, "a.b") == 1  # a claim of exactly that name wins over the path


@pytest.mark.parametrize(("claims", "claim"), [
    ({"sub": "x'; DROP", "roles": ["admin"], "tenant": "acme"}, "sub"),  # not a usable subject
    ({"sub": "vera", "roles": "admin", "tenant": "ac me"}, "tenant"),
    ({"sub": "vera", "roles": [1], "tenant": "acme"}, "roles"),
    ({"sub": "vera", "roles": ["admin"], "tenant": "acme", "groups": "a b"}, None),  # a space-separated string
])
def test_claims_that_cannot_name_the_caller_are_refused_naming_the_claim(claims, claim):
    mapping = ClaimMapping()
    if claim is None:
        assert mapping.groups_of(claims) == ("a", "b")
        return
    with pytest.raises(ClaimsRefused) as refused:
        (mapping.subject_of, mapping.tenant_of, mapping.roles_of)[("sub", "tenant", "roles").index(claim)](claims)
    assert refused.value.claim == claim

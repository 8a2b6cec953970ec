"""Every /v1 route needs a valid bearer JWT; health probes do not."""

from __future__ import annotations

import time
from datetime import timedelta

import jwt
import pytest

from tests.conftest import TEST_SECRET

V1_ROUTES = [
    ("GET", "/v1/workflows"),
    ("POST", "/v1/workflows/document-fingerprint/runs"),
    ("GET", "/v1/runs"),
    ("GET", "/v1/runs/some-id"),
    ("POST", "/v1/runs/some-id/cancel"),
]


def assert_unauthenticated(response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    assert error["code"] == "unauthenticated"
    assert error["message"]


@pytest.mark.parametrize(("method", "path"), V1_ROUTES)
async def test_v1_route_without_token_is_401(http, method, path):
    assert_unauthenticated(await http.request(method, path, json={"input": {}}))


async def test_token_signed_with_another_secret_is_401(http):
    token = jwt.encode({"sub": "mallory", "roles": ["admin"], "tenant": "acme", "iat": int(time.time()),
                        "exp": int(time.time()) + 60}, "not-the-secret-but-just-as-long-0123456789abcdef", algorithm="HS256")
    assert_unauthenticated(await http.get("/v1/workflows", headers={"Authorization": f"Bearer {token}"}))


async def test_expired_token_is_401_and_says_expired(http, auth, settings):
    # Expired by more than the clock skew tolerated (tests/test_auth_providers.py covers the leeway).
    response = await http.get("/v1/workflows", headers=auth(ttl=-timedelta(seconds=settings.jwt_leeway_s + 5)))
    assert_unauthenticated(response)
    assert "expired" in response.json()["error"]["message"]


async def test_unsigned_alg_none_token_is_401(http):
    token = jwt.encode({"sub": "mallory", "roles": ["admin"], "tenant": "acme", "iat": int(time.time()),
                        "exp": int(time.time()) + 60}, None, algorithm="none")
    assert_unauthenticated(await http.get("/v1/workflows", headers={"Authorization": f"Bearer {token}"}))


def token_without(missing: str) -> str:
    claims = {"sub": "alice", "roles": ["operator"], "tenant": "acme", "iat": int(time.time()),
              "exp": int(time.time()) + 60}
    del claims[missing]
    return jwt.encode(claims, TEST_SECRET, algorithm="HS256")


@pytest.mark.parametrize("missing", ["sub", "exp", "iat"])
async def test_token_missing_a_claim_its_validity_needs_is_401(http, missing):
    assert_unauthenticated(await http.get("/v1/workflows", headers={"Authorization": f"Bearer {token_without(missing)}"}))


@pytest.mark.parametrize("missing", ["roles", "tenant"])
async def test_genuine_token_not_naming_a_tenant_or_role_is_403_naming_the_claim(http, missing):
    # Authenticated, so not a 401; and never a default tenant or role in its place.
    response = await http.get("/v1/workflows", headers={"Authorization": f"Bearer {token_without(missing)}"})
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "forbidden" and error["details"] == {"claim": missing} and missing in error["message"]


async def test_tenant_claim_with_query_syntax_is_refused(http):
    claims = {"sub": "alice", "roles": ["operator"], "tenant": "acme' OR Tenant != 'x",
              "iat": int(time.time()), "exp": int(time.time()) + 60}
    token = jwt.encode(claims, TEST_SECRET, algorithm="HS256")
    refused = await http.get("/v1/runs", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 403 and refused.json()["error"]["details"] == {"claim": "tenant"}


async def test_health_probes_need_no_token(http):
    assert (await http.get("/healthz")).json() == {"status": "ok", "temporal": None}
    ready = await http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["temporal"] == "reachable"


async def test_unknown_route_and_wrong_method_use_the_error_shape(http, auth):
    missing = await http.get("/v1/nothing-here", headers=auth())
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = await http.delete("/v1/workflows", headers=auth())
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


async def test_access_log_names_the_principal_and_tenant(http, auth, tenant, log_lines):
    await http.get("/v1/workflows", headers=auth(sub="carol"))
    access = [e for e in log_lines.events() if e.get("event") == "request" and e.get("route") == "/v1/workflows"]
    assert access[-1]["principal"] == "carol" and access[-1]["tenant"] == tenant
    assert access[-1]["status"] == 200 and access[-1]["trace_id"]

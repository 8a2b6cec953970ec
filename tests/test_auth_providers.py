"""Tokens from an identity provider: RS256/ES256 verified with keys from its JWKS URL, served here
by a real local HTTP server; issuer, audience, clock skew, and the attacks a verifier must refuse."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from steward.identity import InvalidToken, JwksKeys
from tests.support import free_port, serve_api

ISSUER = "https://idp.example.test/"
AUDIENCE = "steward-api"


class SigningKey:
    """A provider's key pair: signs tokens, and publishes its public half as a JWK."""

    def __init__(self, kid: str, algorithm: str) -> None:
        self.kid = kid
        self.algorithm = algorithm
        if algorithm == "RS256":
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            self.jwk = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())
            self.jwk = ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        self.jwk.update(kid=kid, use="sig", alg=algorithm)

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, claims: dict[str, Any], *, kid: str | None = None, algorithm: str | None = None) -> str:
        return jwt.encode(claims, self.private, algorithm=algorithm or self.algorithm, headers={"kid": kid or self.kid})


class IdentityProvider:
    """A JWKS endpoint on a real socket, counting its fetches; `keys` can be swapped to rotate."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys = list(keys)
        self.fetches = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                provider.fetches += 1
                body = json.dumps({"keys": [k.jwk for k in provider.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"

    @contextmanager
    def running(self) -> Iterator[IdentityProvider]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


def claims(tenant: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"sub": "idp-alice", "roles": ["operator"], "tenant": tenant, "iss": ISSUER, "aud": AUDIENCE,
            "iat": now, "exp": now + 300}
    return {k: v for k, v in {**base, **overrides}.items() if v is not None}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@asynccontextmanager
async def api_with_jwks(settings, client, jwks_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An API of its own (its own JWKS cache) trusting the provider at `jwks_url`."""
    own = settings.model_copy(update={"api_port": free_port(), "jwks_url": jwks_url, "jwt_issuer": ISSUER,
                                      "jwt_audience": AUDIENCE, "jwt_leeway_s": 30, "jwks_cache_s": 300})
    async with serve_api(own, client) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        yield http


RSA_KEY = SigningKey("rsa-1", "RS256")
EC_KEY = SigningKey("ec-1", "ES256")


@pytest.fixture(scope="module")
def provider() -> Iterator[IdentityProvider]:
    with IdentityProvider(RSA_KEY, EC_KEY).running() as idp:
        yield idp


@pytest.fixture(scope="module")
async def idp_http(settings, client, provider) -> AsyncIterator[httpx.AsyncClient]:
    async with api_with_jwks(settings, client, provider.url) as http:
        yield http


def assert_401(response, says: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["error"]
    assert error["code"] == "unauthenticated" and says in error["message"], error


@pytest.mark.parametrize("key", [RSA_KEY, EC_KEY], ids=["RS256", "ES256"])
async def test_identity_provider_token_is_accepted_with_its_claims(idp_http, key, tenant, log_lines):
    response = await idp_http.get("/v1/runs", headers=bearer(key.sign(claims(tenant, sub=f"idp-{key.kid}"))))
    assert response.status_code == 200, response.text
    access = [e for e in log_lines.events() if e.get("event") == "request" and e.get("route") == "/v1/runs"]
    assert (access[-1]["principal"], access[-1]["tenant"]) == (f"idp-{key.kid}", tenant)


async def test_local_hs256_tokens_still_work_beside_a_jwks(idp_http, auth):
    assert (await idp_http.get("/v1/workflows", headers=auth())).status_code == 200


async def test_identity_provider_roles_are_checked_by_the_policy(idp_http, tenant):
    token = RSA_KEY.sign(claims(tenant, roles=["auditor"]))
    response = await idp_http.post("/v1/runs/some-run/cancel", headers=bearer(token))
    assert response.status_code == 403 and response.json()["error"]["details"] == {"permission": "runs:cancel"}


@pytest.mark.parametrize(("overrides", "says"), [
    ({"iss": "https://evil.example.test/"}, "issuer"),
    ({"aud": "another-app"}, "audience"),
    ({"aud": None}, "aud"),
    ({"iss": None}, "iss"),
], ids=["wrong-issuer", "wrong-audience", "no-audience", "no-issuer"])
async def test_token_for_another_issuer_or_audience_is_401(idp_http, tenant, overrides, says):
    assert_401(await idp_http.get("/v1/workflows", headers=bearer(RSA_KEY.sign(claims(tenant, **overrides)))), says)


async def test_unsigned_alg_none_token_is_401(idp_http, tenant):
    token = jwt.encode(claims(tenant), None, algorithm="none", headers={"kid": RSA_KEY.kid})
    assert_401(await idp_http.get("/v1/workflows", headers=bearer(token)), "algorithm")


async def test_hs256_token_signed_with_the_providers_public_key_is_401(idp_http, tenant):
    # Key confusion: the RSA public key is public; used as an HMAC secret it must verify nothing.
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": RSA_KEY.kid}).encode())
    payload = b64url(json.dumps(claims(tenant, roles=["admin"])).encode())
    signature = hmac.new(RSA_KEY.public_pem(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    token = f"{header}.{payload}.{b64url(signature)}"
    assert_401(await idp_http.get("/v1/workflows", headers=bearer(token)), "not valid")


async def test_token_whose_algorithm_does_not_match_its_key_is_401(idp_http, tenant):
    # Signed with the EC key but naming the RSA key's kid: the kid's key type decides.
    token = EC_KEY.sign(claims(tenant), kid=RSA_KEY.kid)
    assert_401(await idp_http.get("/v1/workflows", headers=bearer(token)), "does not match")


async def test_algorithm_outside_the_allow_list_is_401(idp_http, tenant):
    token = jwt.encode(claims(tenant), RSA_KEY.private, algorithm="PS256", headers={"kid": RSA_KEY.kid})
    assert_401(await idp_http.get("/v1/workflows", headers=bearer(token)), "algorithm 'PS256' is not accepted")


async def test_token_without_a_key_id_is_401(idp_http, tenant):
    token = jwt.encode(claims(tenant), RSA_KEY.private, algorithm="RS256")
    assert_401(await idp_http.get("/v1/workflows", headers=bearer(token)), "kid")


async def test_token_expired_within_the_leeway_is_accepted(idp_http, tenant):
    now = int(time.time())
    token = EC_KEY.sign(claims(tenant, iat=now - 600, exp=now - 10))
    assert (await idp_http.get("/v1/workflows", headers=bearer(token))).status_code == 200


async def test_token_expired_beyond_the_leeway_is_401(idp_http, tenant):
    now = int(time.time())
    token = EC_KEY.sign(claims(tenant, iat=now - 600, exp=now - 60))
    assert_401(await idp_http.get("/v1/workflows", headers=bearer(token)), "expired")


async def test_token_not_valid_before_a_future_time_is_401(idp_http, tenant):
    token = RSA_KEY.sign(claims(tenant, nbf=int(time.time()) + 120))
    assert_401(await idp_http.get("/v1/workflows", headers=bearer(token)), "not valid yet")


async def test_token_without_iat_is_401(idp_http, tenant):
    assert_401(await idp_http.get("/v1/workflows", headers=bearer(RSA_KEY.sign(claims(tenant, iat=None)))), "iat")


async def test_rotated_key_is_fetched_once_on_its_first_unknown_kid(settings, client, tenant):
    old, new = SigningKey("rotate-old", "RS256"), SigningKey("rotate-new", "ES256")
    with IdentityProvider(old).running() as idp:
        async with api_with_jwks(settings, client, idp.url) as http:
            assert (await http.get("/v1/workflows", headers=bearer(old.sign(claims(tenant))))).status_code == 200
            assert (await http.get("/v1/workflows", headers=bearer(old.sign(claims(tenant))))).status_code == 200
            assert idp.fetches == 1  # cached

            idp.keys = [new]
            response = await http.get("/v1/workflows", headers=bearer(new.sign(claims(tenant))))
            assert response.status_code == 200, response.text
            assert (await http.get("/v1/workflows", headers=bearer(new.sign(claims(tenant))))).status_code == 200
            assert idp.fetches == 2  # exactly one refetch, then cached again

            # Made-up kids do not turn into a fetch each: the refetch just happened.
            forged = await http.get("/v1/workflows", headers=bearer(new.sign(claims(tenant), kid="made-up")))
            assert_401(forged, "made-up")
            assert idp.fetches == 2


async def test_unreachable_jwks_is_401_saying_why(settings, client, tenant):
    async with api_with_jwks(settings, client, f"http://127.0.0.1:{free_port()}/jwks.json") as http:
        response = await http.get("/v1/workflows", headers=bearer(RSA_KEY.sign(claims(tenant))))
    assert_401(response, "could not be fetched")


async def test_cached_keys_expire_after_the_cache_time_and_survive_a_provider_outage():
    now = [1000.0]
    with IdentityProvider(RSA_KEY).running() as idp:
        keys = JwksKeys(idp.url, cache_s=60, clock=lambda: now[0])
        assert (await keys.get(RSA_KEY.kid)).key_id == RSA_KEY.kid
        now[0] += 59
        await keys.get(RSA_KEY.kid)
        assert idp.fetches == 1
        now[0] += 2
        await keys.get(RSA_KEY.kid)
        assert idp.fetches == 2
    # The provider is gone: the keys fetched before stay trusted, an unknown kid is refused.
    now[0] += 120
    assert (await keys.get(RSA_KEY.kid)).key_id == RSA_KEY.kid
    with pytest.raises(InvalidToken, match="could not be fetched"):
        await keys.get("never-seen")

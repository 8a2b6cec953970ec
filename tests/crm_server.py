"""A real CRM for tests: the JSON-over-HTTP contract of activities/connectors/http_crm.py, served by
uvicorn on a free loopback port, with its accounts in memory.

It behaves as a careful CRM would: a bearer token is required (401 without it or with a wrong
one), a POST's Idempotency-Key replays the first answer (a create's as 200), a second account for
an external_id is refused with 409, and a bad field is a 422 whose body echoes the value, as many
real APIs do, so tests can prove a connector never quotes it. Tests steer it with `fail_next`
and read it with `requests` and `accounts()`.

Test modules load it with `pytest_plugins = ["tests.crm_server"]` and use the session's shared
server, `crm_server`, or `fresh_crm_server`, one of the test's own (for a test that scripts
failures or needs an empty CRM); `async with serve_crm() as crm:` opens one anywhere else. A
module that loads it as a plugin should import from it only under TYPE_CHECKING: imported first,
pytest cannot rewrite its asserts and warns.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from steward.settings import PLANS, Settings
from tests.support import free_port, serve_asgi, watch

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
COUNTRY = re.compile(r"^[A-Z]{2}$")
Handler = Callable[[Request, bytes], Awaitable[Response]]  # a route's own work, given the body already read


@dataclass(frozen=True)
class CrmRequest:
    """One request as the server saw it (bodies are left out: they hold test contacts' data)."""

    method: str
    path: str
    idempotency_key: str | None


@dataclass
class _Scripted:
    status: int
    headers: dict[str, str]
    body: bytes | None


@dataclass
class CrmServer:
    url: str
    token: str
    requests: list[CrmRequest] = field(default_factory=list)
    _accounts: dict[str, dict[str, Any]] = field(default_factory=dict)  # by id, in creation order
    # Idempotency-Key → (the request's fingerprint, the answer's status and body)
    _replies: dict[str, tuple[str, int, dict[str, Any]]] = field(default_factory=dict)
    _scripted: list[_Scripted] = field(default_factory=list)

    def fail_next(self, n: int = 1, status: int = 503, *, headers: dict[str, str] | None = None,
                  body: bytes | None = None) -> None:
        """The next `n` requests answer `status` (with `headers`, and `body` instead of an error
        object) before anything else is looked at; nothing changes on the server."""
        self._scripted.extend(_Scripted(status, dict(headers or {}), body) for _ in range(n))

    def accounts(self, onboarding_id: str) -> list[dict[str, Any]]:
        """Copies of the accounts whose external_id is `onboarding_id`."""
        return [dict(account) for account in self._accounts.values() if account["external_id"] == onboarding_id]

    def posts(self, idempotency_key: str) -> list[CrmRequest]:
        """The POSTs that carried `idempotency_key`."""
        return [r for r in self.requests if r.method == "POST" and r.idempotency_key == idempotency_key]

    def settings(self, base: Settings) -> Settings:
        """`base` with the http CRM connector pointed at this server."""
        return base.model_copy(update={"crm_connector": "http", "crm_url": self.url,
                                       "crm_token": SecretStr(self.token), "crm_token_file": None})

    # --- the HTTP side ---

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/accounts", self._guarded(self._list), methods=["GET"]),
            Route("/accounts", self._guarded(self._create), methods=["POST"]),
            Route("/accounts/{account_id}/activate", self._guarded(self._activate), methods=["POST"]),
            Route("/accounts/{account_id}/archive", self._guarded(self._archive), methods=["POST"]),
        ])

    def _guarded(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Record the request, then: a scripted answer, the token check, the Idempotency-Key replay."""

        async def endpoint(request: Request) -> Response:
            key = request.headers.get("idempotency-key")
            self.requests.append(CrmRequest(request.method, request.url.path, key))
            if self._scripted:
                scripted = self._scripted.pop(0)
                body = scripted.body if scripted.body is not None else json.dumps(
                    {"error": {"code": "scripted", "message": f"scripted {scripted.status}"}}).encode()
                return Response(body, status_code=scripted.status, headers=scripted.headers,
                                media_type="application/json")
            if not hmac.compare_digest(request.headers.get("authorization", ""), f"Bearer {self.token}"):
                return _error(401, "unauthorized", "a valid bearer token is required",
                              headers={"WWW-Authenticate": 'Bearer realm="crm"'})
            body = await request.body()
            if request.method != "POST" or key is None:
                return await handler(request, body)
            fingerprint = hashlib.sha256(f"{request.method} {request.url.path} ".encode() + body).hexdigest()
            if key in self._replies:
                seen, status, answer = self._replies[key]
                if seen != fingerprint:
                    return _error(422, "idempotency_key_reused", "this Idempotency-Key was used for another request")
                # A replayed create is 200, not 201: nothing was created this time.
                return JSONResponse(answer, status_code=200 if status == 201 else status)
            response = await handler(request, body)
            if 200 <= response.status_code < 300:  # failures are not remembered: the key may be tried again
                self._replies[key] = (fingerprint, response.status_code, json.loads(bytes(response.body)))
            return response

        return endpoint

    async def _list(self, request: Request, _: bytes) -> Response:
        external_id = request.query_params.get("external_id")
        found = [a for a in self._accounts.values() if external_id is None or a["external_id"] == external_id]
        return JSONResponse({"accounts": found})

    async def _create(self, request: Request, body: bytes) -> Response:
        try:
            fields = json.loads(body)
        except ValueError:
            return _error(400, "invalid_json", "the body is not JSON")
        if not isinstance(fields, dict):
            return _error(400, "invalid_json", "the body is not a JSON object")
        problem = _invalid(fields)
        if problem:
            return _error(422, "invalid_field", problem)
        duplicate = next((a for a in self._accounts.values() if a["external_id"] == fields["external_id"]), None)
        if duplicate is not None:
            return _error(409, "duplicate_external_id",
                          f"an account with external_id {fields['external_id']!r} exists", account_id=duplicate["id"])
        account = {
            "id": f"acc_{uuid.uuid4().hex[:16]}",
            **{name: fields[name] for name in ("external_id", "company_name", "plan", "country", "contact_email")},
            "status": "pending",
        }
        self._accounts[account["id"]] = account
        return JSONResponse(account, status_code=201)

    async def _activate(self, request: Request, _: bytes) -> Response:
        account = self._accounts.get(request.path_params["account_id"])
        if account is None:
            return _error(404, "not_found", "no such account")
        if account["status"] == "archived":
            return _error(409, "archived", "an archived account cannot be activated")
        account["status"] = "active"
        return JSONResponse(account)

    async def _archive(self, request: Request, _: bytes) -> Response:
        account = self._accounts.get(request.path_params["account_id"])
        if account is None:
            return _error(404, "not_found", "no such account")
        account["status"] = "archived"
        return JSONResponse(account)


def _invalid(fields: dict[str, Any]) -> str | None:
    """What is wrong with a create's fields, echoing the value the way many real APIs do."""
    for name in ("external_id", "company_name", "plan", "country", "contact_email"):
        if not isinstance(fields.get(name), str) or not fields[name]:
            return f"{name} is required"
    if fields["plan"] not in PLANS:
        return f"plan {fields['plan']!r} is not one of {', '.join(PLANS)}"
    if not COUNTRY.match(fields["country"]):
        return f"country {fields['country']!r} is not an ISO 3166 alpha-2 code"
    if not EMAIL.match(fields["contact_email"]):
        return f"contact_email {fields['contact_email']!r} is not an e-mail address"
    return None


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None, **details: Any) -> Response:
    return JSONResponse({"error": {"code": code, "message": message, "details": details}}, status_code=status,
                        headers=headers)


@asynccontextmanager
async def serve_crm() -> AsyncIterator[CrmServer]:
    """A CRM of its own, empty, with a fresh token (registered with `watch`)."""
    port = free_port()
    token = f"crm-test-{secrets.token_urlsafe(24)}"
    watch("the test CRM's token", token)
    crm = CrmServer(url=f"http://127.0.0.1:{port}", token=token)
    async with serve_asgi(crm.app(), port):
        yield crm


@pytest.fixture(scope="session")
async def crm_server() -> AsyncIterator[CrmServer]:
    """One CRM for the session; tests keep apart by using their own onboarding ids and keys."""
    async with serve_crm() as crm:
        yield crm


@pytest.fixture
async def fresh_crm_server() -> AsyncIterator[CrmServer]:
    """A CRM of the test's own: the failures it scripts cannot reach another test."""
    async with serve_crm() as crm:
        yield crm

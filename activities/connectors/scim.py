"""The identity connector on SCIM 2.0 (RFC 7643 schema, RFC 7644 protocol): a user per onboarding.

SCIM is the protocol identity systems take users over: plain HTTPS and JSON under one base URL
(`…/scim/v2`), `/Users` to create and look up, PATCH to change one attribute. What a system needs
from Steward is that base URL (STEWARD_SCIM_URL) and a bearer token (STEWARD_SCIM_TOKEN or _FILE):

- Okta: an inbound SCIM app instance; Okta shows `https://{okta domain}/{connection id}/scim/v2`
  and a bearer token for it.
- Keycloak: a SCIM server extension (for instance scim-for-keycloak) serves each realm under its
  own base URL; the token is one that extension accepts (a service account's access token).
- Microsoft Entra ID speaks SCIM as a client (it provisions users into apps); its own directory
  takes SCIM only as asynchronous bulk uploads through Microsoft Graph ("API-driven inbound
  provisioning", OAuth client credentials), which this connector does not speak. Point scim_url at
  a SCIM service in front of the directory instead (the app or gateway Entra provisions from).
- Any SaaS that offers "SCIM provisioning": the same two values from its admin console.

Why `externalId`: RFC 7643 §3.1 gives it to the provisioning client, to hold the client's own
identifier; here it is the onboarding id (the workflow id). The system's `id` is only known once
a create has answered, and an attempt that timed out may have created a user without Steward ever
seeing that answer. Looking the user up by `externalId eq "<onboarding id>"` before creating, and
after a 409, finds what an earlier attempt made whatever the server does with the Idempotency-Key
header (most SCIM servers ignore it; it is sent anyway). The answer of every lookup is checked
again here: a server that ignores a filter must never make us adopt, or deactivate, someone else.
The system must therefore store and filter by externalId, as RFC 7643 asks.

Decisions a reader may look for:
- A user that exists for the onboarding is returned as it is, also when a compensation
  deactivated it (`active=False`): reactivating grants access again, which is the workflow's
  decision to make with a step of its own, not a side effect of repeating a create.
- A userName (the email) that belongs to a user of another externalId, or to one without any, is
  a non-retryable rejection: adopting a user this onboarding did not create would let its
  compensation deactivate somebody else.
- Deactivating is PATCH `replace active=false` (RFC 7644 §3.5.2). PATCH is OPTIONAL in SCIM; a
  server without it answers 501 (or 405), and then the user is read and PUT back whole with
  `active` false, under If-Match when the server gives an ETag. PATCH is tried first because a PUT
  replaces everything, including what other systems wrote meanwhile.

Requests never quote personal data in errors or logs: a SCIM Error's `detail` may echo the
request, so only its status and its `scimType` keyword (RFC 7644 §3.12) are used.
"""

from __future__ import annotations

import functools
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import ValidationError
from scim2_models import BaseModel as ScimModel
from scim2_models import Context, Email, Error, ListResponse, Name, PatchOp, PatchOperation, ScimPolicy, User
from temporalio.exceptions import ApplicationError

from activities.connectors.errors import for_status, for_transport, misconfigured, rejected, unavailable
from activities.connectors.models import ConnectorCall, Undone, UserRecord, UserRequest
from steward.logs import get_logger
from steward.settings import Settings

log = get_logger(__name__)

SYSTEM = "scim"
SCIM_JSON = "application/scim+json"
# What a lookup needs, and no more: the users it finds are only compared and deactivated, so their
# names and emails need not travel (RFC 7644 §3.4.2.5; servers ignoring it just send more).
LOOKUP_ATTRIBUTES = "id,externalId,userName,active"
# Servers add attributes and extension schemas of their own (Okta's, Entra's custom ones); reading an
# answer drops what scim2-models does not model rather than refusing the answer.
READ_POLICY = ScimPolicy(unknown=ScimPolicy.Unknown.ignore)
# A PUT replaces the whole user, so what this connector does not model is read and written back as is.
KEEP_POLICY = ScimPolicy(unknown=ScimPolicy.Unknown.keep)
# RFC 7644 §3.12's keywords: safe to name in an error, unlike the `detail` text beside them.
SCIM_ERROR_TYPES = frozenset({
    "invalidFilter", "tooMany", "uniqueness", "mutability", "invalidSyntax", "invalidPath", "noTarget",
    "invalidValue", "invalidVers", "sensitive",
})
DEACTIVATE = PatchOp[User](
    operations=[PatchOperation[User](op=PatchOperation.Op.replace_, path="active", value=False)]
).model_dump(mode="json", scim_ctx=Context.RESOURCE_PATCH_REQUEST)
NO_PATCH = (405, 501)  # how servers without PATCH answer one: 501 per RFC 7644 §3.5.2, 405 in practice

T = TypeVar("T", bound=ScimModel)


class ScimIdentity:
    """IdentityConnector over SCIM 2.0: one user per onboarding, found again by its externalId."""

    system = SYSTEM

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def create_user(self, request: UserRequest) -> UserRecord:
        async with self._session() as http:
            found = await self._find_by_external_id(http, request.onboarding_id)
            if found:
                log.info("scim user found for onboarding", onboarding_id=request.onboarding_id, user_id=found[0].id)
                return _record(found[0])
            response = await _send(http, "POST", "/Users", "creating the user", body=_new_user(request),
                                   headers={"Idempotency-Key": request.idempotency_key})
            if response.status_code == 409:
                return await self._after_conflict(http, request, response)
            if not response.is_success:
                raise _failure(response, "creating the user")
            created = _read(response, User, Context.RESOURCE_CREATION_RESPONSE, "creating the user")
            log.info("scim user created", onboarding_id=request.onboarding_id, user_id=created.id)
            return _record(created)

    async def deactivate_user(self, call: ConnectorCall) -> Undone:
        async with self._session() as http:
            users = await self._find_by_external_id(http, call.onboarding_id)
            if not users:
                return Undone(system=SYSTEM, found=False, detail=f"no user for onboarding {call.onboarding_id}")
            outcomes = []
            for user in users:  # one, unless somebody else made a second user with our externalId
                if user.active is False:  # PATCHing again would only repeat a write
                    outcomes.append(f"user {user.id} already deactivated")
                    continue
                outcomes.append(await self._deactivate(http, user.id, call.idempotency_key))
            log.info("scim user deactivation done", onboarding_id=call.onboarding_id, users=len(users))
            return Undone(system=SYSTEM, found=True, detail="; ".join(outcomes))

    async def _after_conflict(self, http: httpx.AsyncClient, request: UserRequest,
                              response: httpx.Response) -> UserRecord:
        """A 409: an earlier or concurrent attempt made the user, or the userName belongs to someone else."""
        found = await self._find_by_external_id(http, request.onboarding_id)
        if found:
            log.info("scim user made by another attempt", onboarding_id=request.onboarding_id, user_id=found[0].id)
            return _record(found[0])
        holders = await self._query(http, f"userName eq {_literal(request.email)}", "looking up the userName")
        mine = [user for user in holders if user.external_id == request.onboarding_id]
        if mine:  # a server whose externalId filter lags behind its writes
            return _record(mine[0])
        if holders:
            raise rejected(SYSTEM, "creating the user: its email is already the userName of another user (409)", 409)
        if _scim_type(response) == "uniqueness":  # on an attribute other than userName (some systems: emails)
            raise rejected(SYSTEM, "creating the user conflicts with an existing user (409, uniqueness)", 409)
        # No uniqueness keyword and nobody holding the userName: a server honouring Idempotency-Key answers
        # 409 while the first request with the key is still running, so a later attempt finds the user.
        raise unavailable(SYSTEM, "creating the user: the server reports a conflict with a request in progress (409)")

    async def _find_by_external_id(self, http: httpx.AsyncClient, onboarding_id: str) -> list[User]:
        users = await self._query(http, f"externalId eq {_literal(onboarding_id)}", "looking up the user")
        if any(user.external_id != onboarding_id for user in users):
            raise misconfigured(SYSTEM, "looking up the user: the server answered an externalId filter with users "
                                        "that do not match it; it must filter by externalId")
        return users

    async def _query(self, http: httpx.AsyncClient, scim_filter: str, what: str) -> list[User]:
        response = await _send(http, "GET", "/Users", what,
                               params={"filter": scim_filter, "attributes": LOOKUP_ATTRIBUTES})
        if response.status_code == 404:  # the collection itself: the base URL is wrong, no retry will help
            raise misconfigured(SYSTEM, f"{what}: there is no /Users under the SCIM base URL (404)")
        if not response.is_success:
            raise _failure(response, what)
        return list(_read(response, ListResponse[User], Context.RESOURCE_QUERY_RESPONSE, what).resources or [])

    async def _deactivate(self, http: httpx.AsyncClient, user_id: str | None, key: str) -> str:
        path = f"/Users/{quote(user_id or '', safe='')}"
        response = await _send(http, "PATCH", path, "deactivating the user", body=DEACTIVATE,
                               headers={"Idempotency-Key": key})
        if response.status_code in NO_PATCH:
            response = await self._replace_inactive(http, path, key)
        if response.status_code == 404:  # deleted since the lookup: it cannot sign in either
            return f"user {user_id} no longer exists"
        if not response.is_success:
            raise _failure(response, "deactivating the user")
        return f"user {user_id} deactivated"

    async def _replace_inactive(self, http: httpx.AsyncClient, path: str, key: str) -> httpx.Response:
        """The PUT fallback: the whole user as the server has it, with active false."""
        response = await _send(http, "GET", path, "reading the user")
        if not response.is_success:  # a 404 included: the caller says what it means
            return response
        user = _read(response, User, Context.RESOURCE_QUERY_RESPONSE, "reading the user", policy=KEEP_POLICY)
        headers = {"Idempotency-Key": key}
        version = response.headers.get("ETag") or (user.meta.version if user.meta else None)
        if version:  # nobody's change made between our read and our write is lost
            headers["If-Match"] = version
        body = user.model_copy(update={"active": False}).model_dump(
            mode="json", scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST, scim_policy=KEEP_POLICY)
        response = await _send(http, "PUT", path, "deactivating the user", body=body, headers=headers)
        if response.status_code == 412:  # changed meanwhile: the next attempt reads it again
            raise unavailable(SYSTEM, "deactivating the user: it changed while being replaced (412)")
        return response

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[httpx.AsyncClient]:
        settings = self._settings
        if not settings.scim_url:
            raise misconfigured(SYSTEM, "no SCIM base URL is configured (STEWARD_SCIM_URL)")
        try:
            token = settings.scim_token_value()
        except OSError as error:
            raise misconfigured(SYSTEM, f"the SCIM token file cannot be read ({type(error).__name__})") from None
        headers = {"Accept": SCIM_JSON}
        if token:  # without one the server's 401 says what is missing
            headers["Authorization"] = f"Bearer {token}"
        # retries=0: Temporal owns retries (httpx's default too, said here so nobody turns it on).
        transport = httpx.AsyncHTTPTransport(retries=0, verify=_tls_context())
        async with httpx.AsyncClient(base_url=settings.scim_url.rstrip("/"), headers=headers, transport=transport,
                                     timeout=settings.connector_timeout_s, follow_redirects=False) as http:
            yield http


async def _send(http: httpx.AsyncClient, method: str, path: str, what: str, *, body: dict[str, Any] | None = None,
                params: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
    content = None
    if body is not None:
        headers = {**(headers or {}), "Content-Type": SCIM_JSON}
        content = json.dumps(body, ensure_ascii=False).encode()
    try:
        return await http.request(method, path, content=content, params=params, headers=headers)
    except (httpx.UnsupportedProtocol, httpx.InvalidURL):
        raise misconfigured(SYSTEM, f"{what}: the SCIM base URL is not an http(s) URL") from None
    except httpx.HTTPError as error:
        # Not chained: a transport error's text can carry the URL, and a userName lookup's URL holds an email.
        raise for_transport(SYSTEM, error, what) from None


def _failure(response: httpx.Response, what: str) -> ApplicationError:
    """The error a SCIM answer that is not a success means, naming its scimType keyword at most."""
    status = response.status_code
    scim_type = _scim_type(response)
    if status == 501:
        return misconfigured(SYSTEM, f"{what}: the server does not implement it (501)")
    if 300 <= status < 400:
        return misconfigured(SYSTEM, f"{what}: the server redirects ({status}); check the SCIM base URL")
    if status == 400 and scim_type == "invalidFilter":
        return misconfigured(SYSTEM, f"{what}: the server cannot filter users by this attribute (400, invalidFilter)")
    if status in (401, 403, 408, 429) or status >= 500 or scim_type is None:
        return for_status(SYSTEM, response, what)
    return rejected(SYSTEM, f"{what} was rejected ({status}, {scim_type})", status)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's default TLS context, built once: loading the CA bundle costs ~0.1 s per client otherwise."""
    return httpx.create_ssl_context()


def _scim_type(response: httpx.Response) -> str | None:
    try:
        error = Error.model_validate(response.json(), scim_policy=READ_POLICY)
    except ValueError:  # not JSON, or not a SCIM Error (pydantic's ValidationError is a ValueError)
        return None
    return error.scim_type if error.scim_type in SCIM_ERROR_TYPES else None


def _read(response: httpx.Response, model: type[T], context: Context, what: str,
          policy: ScimPolicy = READ_POLICY) -> T:
    try:
        return model.model_validate(_json(response, what), scim_ctx=context, scim_policy=policy)
    except ValidationError:
        raise misconfigured(SYSTEM, f"{what}: the answer is not a SCIM {model.__name__}; check the SCIM base URL") \
            from None


def _json(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise misconfigured(SYSTEM, f"{what}: the answer is not JSON; check the SCIM base URL") from None


def _literal(value: str) -> str:
    """A filter's string operand: RFC 7644 §3.4.2.2 compares against JSON strings, quotes escaped."""
    return json.dumps(value, ensure_ascii=False)


def _new_user(request: UserRequest) -> dict[str, Any]:
    full_name = " ".join(request.full_name.split())
    # Best effort for systems that require given and family names: the first word, and the rest (so
    # "Jan van der Berg" keeps "van der Berg"); `formatted` and displayName carry the name as written.
    given, _, family = full_name.partition(" ")
    try:
        user = User(
            user_name=request.email,
            external_id=request.onboarding_id,
            display_name=full_name,
            name=Name(formatted=full_name, given_name=given, family_name=family or None),
            emails=[Email(value=request.email, primary=True, type=Email.Type.work)],
            active=True,
        )
    except ValidationError:
        raise rejected(SYSTEM, "creating the user: the email is not an address SCIM accepts") from None
    return user.model_dump(mode="json", scim_ctx=Context.RESOURCE_CREATION_REQUEST)


def _record(user: User) -> UserRecord:
    # A server that does not return `active` has no deactivation to tell of.
    return UserRecord(system=SYSTEM, user_id=str(user.id), active=user.active is not False)

"""The CRM connector for any CRM that offers (or is put behind an adapter offering) this small JSON API.

`STEWARD_CRM_URL` is the API's base; every request carries `Authorization: Bearer <token>` when
`STEWARD_CRM_TOKEN`/`STEWARD_CRM_TOKEN_FILE` is set, and every POST an `Idempotency-Key`. The
contract a company's adapter, or a specific CRM's connector, must offer:

    GET  {base}/accounts?external_id=<onboarding_id>
         200 {"accounts": [{"id", "external_id", "status", ...}]}   (empty list: none)
    POST {base}/accounts   {"external_id", "company_name", "plan", "country", "contact_email"}
         201 {"id", "external_id", "status": "pending", ...}
         200 the same account when the Idempotency-Key was seen before
         409 when an account with that external_id already exists
    POST {base}/accounts/{id}/activate   200 the account, status "active"
    POST {base}/accounts/{id}/archive    200 the account, status "archived"

`status` is one of "pending", "active", "archived"; other fields are ignored. 401/403 mean the
credentials are wrong, 408/429/5xx that the CRM is busy or down (Retry-After is honoured), any
other 4xx that the request is wrong.

What this connector adds on top: the `external_id` (the onboarding id) is looked up before
anything changes, so a retry never makes a second account even where the server forgets
idempotency keys, and activating an active account or archiving an archived one is a no-op.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError
from temporalio.exceptions import ApplicationError

from activities.connectors import errors
from activities.connectors.models import AccountRecord, AccountRequest, ConnectorCall, Undone
from steward.logs import get_logger
from steward.settings import Settings

log = get_logger(__name__)

SYSTEM = "http"
USER_AGENT = "Steward-Connectors/1"


class _Account(BaseModel):
    """An account as the CRM answers it: only what the connector reads (extra fields are ignored)."""

    id: str
    external_id: str
    status: Literal["pending", "active", "archived"]


class _Accounts(BaseModel):
    accounts: list[_Account]


class HttpCrm:
    system = SYSTEM

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def create_account(self, request: AccountRequest) -> AccountRecord:
        async with self._client() as client:
            existing = await self._find(client, request.onboarding_id, "create account")
            if existing is not None:
                return _record(existing)
            body = {
                "external_id": request.onboarding_id,
                "company_name": request.company_name,
                "plan": request.plan,
                "country": request.country,
                "contact_email": request.contact_email,
            }
            response = await _send(client, "POST", "/accounts", "create account",
                                   json=body, headers={"Idempotency-Key": request.idempotency_key})
            if response.status_code == 409:
                # An earlier attempt made it (with another key, or the server forgot ours).
                existing = await self._find(client, request.onboarding_id, "create account")
                if existing is None:
                    # Some CRMs' search lags behind their writes: worth another attempt later.
                    raise errors.unavailable(SYSTEM, "create account: the CRM reports the account exists "
                                                     "but does not list it yet")
                return _record(existing)
            account = _account(_success(response, "create account"), "create account")
            _check_owner(account, request.onboarding_id, "create account")
        log.info("crm account created", onboarding_id=request.onboarding_id, account_id=account.id)
        return _record(account)

    async def activate_account(self, call: ConnectorCall) -> AccountRecord:
        async with self._client() as client:
            existing = await self._find(client, call.onboarding_id, "activate account")
            if existing is None:
                # Onboarding activates only what it created: a missing account is a bug, not a glitch.
                raise errors.rejected(SYSTEM, "activate account: there is no account for this onboarding")
            if existing.status == "active":
                return _record(existing)
            account = await self._transition(client, existing, "activate", call.idempotency_key, "active")
        log.info("crm account activated", onboarding_id=call.onboarding_id, account_id=account.id)
        return _record(account)

    async def archive_account(self, call: ConnectorCall) -> Undone:
        async with self._client() as client:
            existing = await self._find(client, call.onboarding_id, "archive account")
            if existing is None:
                return Undone(system=SYSTEM, found=False, detail="no CRM account for this onboarding")
            if existing.status == "archived":
                return Undone(system=SYSTEM, found=True, detail=f"CRM account {existing.id} already archived")
            account = await self._transition(client, existing, "archive", call.idempotency_key, "archived")
        log.info("crm account archived", onboarding_id=call.onboarding_id, account_id=account.id)
        return Undone(system=SYSTEM, found=True, detail=f"CRM account {account.id} archived")

    def _client(self) -> httpx.AsyncClient:
        base = self._settings.crm_url
        if not base:
            raise errors.misconfigured(SYSTEM, "no CRM address: set STEWARD_CRM_URL")
        try:
            url = httpx.URL(base)
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise errors.misconfigured(SYSTEM, "STEWARD_CRM_URL is not an http(s) URL")
        try:
            token = self._settings.crm_token_value()
        except OSError as error:
            # Only the kind of error: its text names the file, and the file may be somewhere private.
            raise errors.misconfigured(SYSTEM, f"the CRM token file cannot be read ({type(error).__name__})") from None
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # Temporal owns retries and the network path is the configured one: no redirects, no proxy
        # settings from the environment, and httpx's transport does not retry by default.
        return httpx.AsyncClient(base_url=base, headers=headers, timeout=self._settings.connector_timeout_s,
                                 follow_redirects=False, trust_env=False)

    async def _find(self, client: httpx.AsyncClient, onboarding_id: str, what: str) -> _Account | None:
        response = await _send(client, "GET", "/accounts", what, params={"external_id": onboarding_id})
        if response.status_code == 404:  # the collection itself: the base URL is wrong, no retry will help
            raise errors.misconfigured(SYSTEM, f"{what}: there is no /accounts under STEWARD_CRM_URL (404)")
        body = _success(response, what)
        try:
            listed = _Accounts.model_validate(body)
        except ValidationError as error:
            raise _unexpected(what, "the account list", error) from None
        # A server that ignores the filter must not hand us someone else's account.
        mine = [account for account in listed.accounts if account.external_id == onboarding_id]
        if len(mine) > 1:
            raise errors.rejected(SYSTEM, f"{what}: the CRM holds {len(mine)} accounts for this onboarding; "
                                          "one must be removed by hand")
        return mine[0] if mine else None

    async def _transition(self, client: httpx.AsyncClient, account: _Account, action: str, key: str,
                          expected: str) -> _Account:
        what = f"{action} account"
        response = await _send(client, "POST", f"/accounts/{quote(account.id, safe='')}/{action}", what,
                               headers={"Idempotency-Key": key})
        changed = _account(_success(response, what), what)
        if changed.id != account.id:
            raise errors.rejected(SYSTEM, f"{what}: the CRM answered with another account")
        if changed.status != expected:
            raise errors.rejected(SYSTEM, f"{what}: the CRM answered status {changed.status!r}, not {expected!r}")
        return changed


async def _send(client: httpx.AsyncClient, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
    try:
        return await client.request(method, path, **kwargs)
    except httpx.HTTPError as error:
        raise errors.for_transport(SYSTEM, error, what) from None


def _success(response: httpx.Response, what: str) -> Any:
    """The JSON of a 2xx answer; any other answer as the typed failure it means."""
    if response.is_redirect:
        # Redirects are not followed (credentials would travel to wherever they point): the URL is wrong.
        raise errors.misconfigured(SYSTEM, f"{what}: the CRM answered with a redirect ({response.status_code}): "
                                           "check STEWARD_CRM_URL")
    if not response.is_success:
        raise errors.for_status(SYSTEM, response, what)
    try:
        return response.json()
    except ValueError:  # not JSON, or not text
        raise errors.rejected(SYSTEM, f"{what}: the CRM's answer is not JSON", response.status_code) from None


def _account(body: Any, what: str) -> _Account:
    try:
        return _Account.model_validate(body)
    except ValidationError as error:
        raise _unexpected(what, "the account", error) from None


def _unexpected(what: str, expected: str, error: ValidationError) -> ApplicationError:
    """Names the fields that were wrong, never their values (they may be personal data)."""
    problems = "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or 'body'}: {problem['type']}"
        for problem in error.errors()[:5]
    )
    return errors.rejected(SYSTEM, f"{what}: the CRM's answer is not {expected} this connector expects ({problems})")


def _check_owner(account: _Account, onboarding_id: str, what: str) -> None:
    if account.external_id != onboarding_id:
        raise errors.rejected(SYSTEM, f"{what}: the CRM answered with an account of another onboarding")


def _record(account: _Account) -> AccountRecord:
    return AccountRecord(system=SYSTEM, account_id=account.id, status=account.status)

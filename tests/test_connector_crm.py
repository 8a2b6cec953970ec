"""The JSON-over-HTTP CRM connector against a real CRM server (tests/crm_server.py) over real HTTP."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from temporalio.exceptions import ApplicationError

from activities.connectors.base import crm_connector
from activities.connectors.errors import CONNECTOR_MISCONFIGURED, CONNECTOR_REJECTED, CONNECTOR_UNAVAILABLE
from activities.connectors.http_crm import HttpCrm
from activities.connectors.models import AccountRequest, ConnectorCall
from steward.settings import Settings
from tests.support import free_port, watch

if TYPE_CHECKING:  # loaded as a plugin below; importing it first would stop pytest rewriting its asserts
    from tests.crm_server import CrmServer

pytest_plugins = ["tests.crm_server"]

CONTACT_EMAIL = "finance@zebulon-quillfeather-ltd.example"
COMPANY = "Quillfeather Holdings Ltd"
watch("a test contact's e-mail", CONTACT_EMAIL)


@pytest.fixture
def base(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


@pytest.fixture
def crm(crm_server: CrmServer, base: Settings) -> HttpCrm:
    return HttpCrm(crm_server.settings(base))


def onboarding() -> str:
    return f"customer-onboarding-{uuid.uuid4().hex}"


def account_request(onboarding_id: str, step: str = "create-account", **changes: str) -> AccountRequest:
    fields = dict(onboarding_id=onboarding_id, idempotency_key=f"{onboarding_id}/{step}", company_name=COMPANY,
                  plan="team", country="DE", contact_email=CONTACT_EMAIL)
    return AccountRequest(**{**fields, **changes})


def call(onboarding_id: str, step: str) -> ConnectorCall:
    return ConnectorCall(onboarding_id=onboarding_id, idempotency_key=f"{onboarding_id}/{step}")


async def failure_of(coroutine) -> ApplicationError:
    with pytest.raises(ApplicationError) as raised:
        await coroutine
    return raised.value


async def test_the_settings_choose_the_http_crm_when_its_address_is_set(crm_server: CrmServer, base: Settings):
    assert isinstance(crm_connector(crm_server.settings(base)), HttpCrm)
    assert isinstance(crm_connector(base.model_copy(update={"crm_url": crm_server.url})), HttpCrm)


async def test_an_account_is_created_pending_with_the_request_fields_and_the_idempotency_key(
        crm: HttpCrm, crm_server: CrmServer):
    onboarding_id = onboarding()
    request = account_request(onboarding_id)

    record = await crm.create_account(request)

    assert record.system == "http" and record.status == "pending"
    [stored] = crm_server.accounts(onboarding_id)
    assert stored == {"id": record.account_id, "external_id": onboarding_id, "company_name": COMPANY, "plan": "team",
                      "country": "DE", "contact_email": CONTACT_EMAIL, "status": "pending"}
    [post] = crm_server.posts(request.idempotency_key)
    assert post.path == "/accounts"


async def test_creating_twice_gives_one_account(crm: HttpCrm, crm_server: CrmServer):
    onboarding_id = onboarding()
    first = await crm.create_account(account_request(onboarding_id))
    again = await crm.create_account(account_request(onboarding_id))

    assert again == first
    assert len(crm_server.accounts(onboarding_id)) == 1


async def test_a_new_key_for_the_same_onboarding_finds_the_account_instead_of_posting(
        crm: HttpCrm, crm_server: CrmServer):
    onboarding_id = onboarding()
    first = await crm.create_account(account_request(onboarding_id))
    again = await crm.create_account(account_request(onboarding_id, step="create-account-attempt-2"))

    assert again == first
    assert crm_server.posts(f"{onboarding_id}/create-account-attempt-2") == []
    assert len(crm_server.accounts(onboarding_id)) == 1


async def test_an_account_the_lookup_missed_is_found_after_the_conflict(fresh_crm_server: CrmServer, base: Settings):
    """The lookup answers empty (as a lagging search index would), the create gets 409: the
    connector looks again and returns the existing account rather than failing or making another."""
    crm = HttpCrm(fresh_crm_server.settings(base))
    onboarding_id = onboarding()
    first = await crm.create_account(account_request(onboarding_id))
    fresh_crm_server.fail_next(1, 200, body=b'{"accounts": []}')

    again = await crm.create_account(account_request(onboarding_id, step="another-attempt"))

    assert again == first
    assert len(fresh_crm_server.accounts(onboarding_id)) == 1
    assert len(fresh_crm_server.posts(f"{onboarding_id}/another-attempt")) == 1  # the POST that met the 409


async def test_a_retry_after_a_lost_answer_replays_the_same_key_and_makes_no_second_account(
        fresh_crm_server: CrmServer, base: Settings):
    """The first attempt's create went through but its lookup on retry comes back empty: the
    server replays the create for the same Idempotency-Key."""
    crm = HttpCrm(fresh_crm_server.settings(base))
    onboarding_id = onboarding()
    request = account_request(onboarding_id)
    first = await crm.create_account(request)
    fresh_crm_server.fail_next(1, 200, body=b'{"accounts": []}')

    again = await crm.create_account(request)

    assert again == first
    assert len(fresh_crm_server.posts(request.idempotency_key)) == 2
    assert len(fresh_crm_server.accounts(onboarding_id)) == 1


async def test_activating_makes_the_account_active_and_twice_is_fine(crm: HttpCrm, crm_server: CrmServer):
    onboarding_id = onboarding()
    created = await crm.create_account(account_request(onboarding_id))

    active = await crm.activate_account(call(onboarding_id, "activate-account"))
    again = await crm.activate_account(call(onboarding_id, "activate-account"))

    assert active.account_id == created.account_id and active.status == "active"
    assert again == active
    [stored] = crm_server.accounts(onboarding_id)
    assert stored["status"] == "active"
    assert len(crm_server.posts(f"{onboarding_id}/activate-account")) == 1


async def test_archiving_archives_the_account_and_twice_is_fine(crm: HttpCrm, crm_server: CrmServer):
    onboarding_id = onboarding()
    created = await crm.create_account(account_request(onboarding_id))

    undone = await crm.archive_account(call(onboarding_id, "archive-account"))
    again = await crm.archive_account(call(onboarding_id, "archive-account"))

    assert undone.found and undone.system == "http" and created.account_id in undone.detail
    assert again.found and "already" in again.detail
    [stored] = crm_server.accounts(onboarding_id)
    assert stored["status"] == "archived"


async def test_archiving_an_onboarding_without_an_account_finds_nothing_and_succeeds(
        crm: HttpCrm, crm_server: CrmServer):
    onboarding_id = onboarding()

    undone = await crm.archive_account(call(onboarding_id, "archive-account"))

    assert not undone.found and undone.system == "http"
    assert crm_server.posts(f"{onboarding_id}/archive-account") == []


async def test_activating_an_onboarding_without_an_account_is_rejected_without_retry(crm: HttpCrm):
    failure = await failure_of(crm.activate_account(call(onboarding(), "activate-account")))

    assert failure.type == CONNECTOR_REJECTED and failure.non_retryable


async def test_activating_an_archived_account_is_rejected_without_retry(crm: HttpCrm):
    onboarding_id = onboarding()
    await crm.create_account(account_request(onboarding_id))
    await crm.archive_account(call(onboarding_id, "archive-account"))

    failure = await failure_of(crm.activate_account(call(onboarding_id, "activate-account")))

    assert failure.type == CONNECTOR_REJECTED and failure.non_retryable and "409" in failure.message


async def test_a_503_is_retryable_and_changes_nothing(fresh_crm_server: CrmServer, base: Settings):
    crm = HttpCrm(fresh_crm_server.settings(base))
    onboarding_id = onboarding()
    fresh_crm_server.fail_next(1, 503)

    failure = await failure_of(crm.create_account(account_request(onboarding_id)))

    assert failure.type == CONNECTOR_UNAVAILABLE and not failure.non_retryable
    assert fresh_crm_server.accounts(onboarding_id) == []
    # Temporal's next attempt, the same request, goes through.
    assert (await crm.create_account(account_request(onboarding_id))).status == "pending"


async def test_a_429_is_retryable_after_the_servers_retry_after(fresh_crm_server: CrmServer, base: Settings):
    crm = HttpCrm(fresh_crm_server.settings(base))
    fresh_crm_server.fail_next(1, 429, headers={"Retry-After": "7"})

    failure = await failure_of(crm.create_account(account_request(onboarding())))

    assert failure.type == CONNECTOR_UNAVAILABLE and not failure.non_retryable
    assert failure.next_retry_delay == timedelta(seconds=7)


async def test_a_422_is_rejected_without_retry_and_the_body_it_echoes_is_not_quoted(crm: HttpCrm):
    # The CRM checks e-mail addresses more strictly than the request model and echoes the value back.
    bad_email = "zebulon.quillfeather-at-example"
    watch("a test contact's e-mail", bad_email)

    failure = await failure_of(crm.create_account(account_request(onboarding(), contact_email=bad_email)))

    assert failure.type == CONNECTOR_REJECTED and failure.non_retryable and "422" in failure.message
    assert bad_email not in str(failure) and bad_email not in repr(failure.details)


async def test_no_token_where_the_crm_wants_one_is_a_misconfiguration(crm_server: CrmServer, base: Settings):
    settings = crm_server.settings(base)
    wrong = settings.model_copy(update={"crm_token": None})
    crm = HttpCrm(wrong)

    failure = await failure_of(crm.create_account(account_request(onboarding())))

    assert failure.type == CONNECTOR_MISCONFIGURED and failure.non_retryable and "401" in failure.message


async def test_a_wrong_token_is_a_misconfiguration(crm_server: CrmServer, base: Settings, tmp_path: Path):
    token_file = tmp_path / "crm-token"
    token_file.write_text("crm-test-not-the-servers-token\n")
    token_file.chmod(0o600)
    watch("a wrong CRM token", "crm-test-not-the-servers-token")
    crm = HttpCrm(crm_server.settings(base).model_copy(update={"crm_token": None, "crm_token_file": token_file}))

    failure = await failure_of(crm.archive_account(call(onboarding(), "archive-account")))

    assert failure.type == CONNECTOR_MISCONFIGURED and failure.non_retryable
    assert "crm-test-not-the-servers-token" not in str(failure)


async def test_nothing_listening_is_retryable(base: Settings):
    crm = HttpCrm(base.model_copy(update={"crm_connector": "http", "crm_url": f"http://127.0.0.1:{free_port()}"}))

    failure = await failure_of(crm.create_account(account_request(onboarding())))

    assert failure.type == CONNECTOR_UNAVAILABLE and not failure.non_retryable and "unreachable" in failure.message


@pytest.mark.parametrize("url", [None, "crm.internal/api", "ftp://crm.internal"])
async def test_no_usable_address_is_a_misconfiguration(base: Settings, url: str | None):
    crm = HttpCrm(base.model_copy(update={"crm_connector": "http", "crm_url": url}))

    failure = await failure_of(crm.archive_account(call(onboarding(), "archive-account")))

    assert failure.type == CONNECTOR_MISCONFIGURED and failure.non_retryable


async def test_an_answer_of_the_wrong_shape_is_rejected_naming_the_field_not_the_body(
        fresh_crm_server: CrmServer, base: Settings):
    crm = HttpCrm(fresh_crm_server.settings(base))
    onboarding_id = onboarding()
    fresh_crm_server.fail_next(1, 200, body=(b'{"accounts": [{"id": "acc_1", "external_id": "%s", "status": "gone", '
                                    b'"contact_email": "%s"}]}') % (onboarding_id.encode(), CONTACT_EMAIL.encode()))

    failure = await failure_of(crm.activate_account(call(onboarding_id, "activate-account")))

    assert failure.type == CONNECTOR_REJECTED and failure.non_retryable
    assert "accounts.0.status" in failure.message and CONTACT_EMAIL not in failure.message


async def test_an_answer_that_is_not_json_is_rejected(fresh_crm_server: CrmServer, base: Settings):
    crm = HttpCrm(fresh_crm_server.settings(base))
    fresh_crm_server.fail_next(1, 200, body=b"<html>maintenance page</html>")

    failure = await failure_of(crm.archive_account(call(onboarding(), "archive-account")))

    assert failure.type == CONNECTOR_REJECTED and failure.non_retryable and "not JSON" in failure.message


async def test_a_redirect_is_not_followed_and_is_a_misconfiguration(fresh_crm_server: CrmServer, base: Settings):
    crm = HttpCrm(fresh_crm_server.settings(base))
    fresh_crm_server.fail_next(1, 307, headers={"Location": "http://127.0.0.1:9/elsewhere"})

    failure = await failure_of(crm.archive_account(call(onboarding(), "archive-account")))

    assert failure.type == CONNECTOR_MISCONFIGURED and failure.non_retryable
    assert len(fresh_crm_server.requests) == 1


async def test_a_base_url_with_no_accounts_under_it_is_misconfigured(crm_server: CrmServer, base: Settings):
    wrong_path = crm_server.settings(base).model_copy(update={"crm_url": f"{crm_server.url}/api/v9"})
    failure = await failure_of(HttpCrm(wrong_path).create_account(account_request(onboarding())))
    assert failure.type == CONNECTOR_MISCONFIGURED and failure.non_retryable
    assert "STEWARD_CRM_URL" in failure.message

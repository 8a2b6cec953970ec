"""The SCIM identity connector against a real SCIM 2.0 server (scim2-server, a subprocess)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError

from activities.connectors.base import identity_connector
from activities.connectors.errors import CONNECTOR_MISCONFIGURED, CONNECTOR_REJECTED, CONNECTOR_UNAVAILABLE
from activities.connectors.models import ConnectorCall, UserRequest
from activities.connectors.scim import ScimIdentity
from steward.settings import Settings
from tests.conftest import TEST_APPLICANT_NAMES
from tests.support import free_port, watch

# Imported here and loaded as a plugin too: registered first, it is rewritten whichever comes first.
pytest.register_assert_rewrite("tests.scim_server")
from tests.scim_server import ScimServer, running_scim_server  # noqa: E402

pytest_plugins = ["tests.scim_server"]

HANNA, MAREK, ZEBULON, ADA, LUKASZ = TEST_APPLICANT_NAMES


@pytest.fixture
def base(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


@pytest.fixture
def scim(scim_server: ScimServer, base: Settings) -> ScimIdentity:
    return ScimIdentity(scim_server.settings(base))


def applicant(full_name: str, onboarding_id: str | None = None, step: str = "create-user") -> UserRequest:
    """A request with a fresh onboarding and an email of its own, so tests share the server safely."""
    onboarding_id = onboarding_id or f"onboarding-{uuid.uuid4()}"
    local = full_name.split()[0].lower().encode("ascii", "ignore").decode() or "applicant"
    return UserRequest(onboarding_id=onboarding_id, idempotency_key=f"{onboarding_id}/{step}",
                       full_name=full_name, email=f"{local}.{uuid.uuid4().hex[:12]}@example.com")


def undo_call(onboarding_id: str) -> ConnectorCall:
    return ConnectorCall(onboarding_id=onboarding_id, idempotency_key=f"{onboarding_id}/deactivate-user")


async def test_the_settings_pick_the_scim_connector(scim_server: ScimServer, base: Settings):
    assert isinstance(identity_connector(scim_server.settings(base)), ScimIdentity)


async def test_a_user_is_created_active_with_the_onboarding_as_external_id(scim: ScimIdentity,
                                                                           scim_server: ScimServer):
    request = applicant(HANNA)

    record = await scim.create_user(request)

    assert record.system == "scim" and record.active
    [user] = await scim_server.users(request.onboarding_id)
    assert user["id"] == record.user_id
    assert user["externalId"] == request.onboarding_id
    assert user["userName"] == request.email
    assert user["active"] is True
    assert user["emails"] == [{"value": request.email, "type": "work", "primary": True}]
    assert user["name"] == {"formatted": HANNA, "givenName": "Hanna", "familyName": "Becker"}


async def test_a_name_keeps_its_letters_and_its_family_name_particles(scim: ScimIdentity, scim_server: ScimServer):
    accented, particles = applicant(LUKASZ), applicant("Jan van der Berg")

    await scim.create_user(accented)
    await scim.create_user(particles)

    [user] = await scim_server.users(accented.onboarding_id)
    assert user["name"] == {"formatted": LUKASZ, "givenName": "Łukasz", "familyName": "Żółć"}
    [user] = await scim_server.users(particles.onboarding_id)
    assert user["name"]["givenName"] == "Jan" and user["name"]["familyName"] == "van der Berg"


async def test_creating_twice_gives_one_user(scim: ScimIdentity, scim_server: ScimServer):
    request = applicant(MAREK)

    first = await scim.create_user(request)
    second = await scim.create_user(request)

    assert second == first
    assert len(await scim_server.users(request.onboarding_id)) == 1


async def test_a_new_idempotency_key_for_the_same_onboarding_gives_the_same_user(scim: ScimIdentity,
                                                                                 scim_server: ScimServer):
    request = applicant(ADA)
    first = await scim.create_user(request)

    again = await scim.create_user(request.model_copy(update={"idempotency_key": f"{request.onboarding_id}/other"}))

    assert again.user_id == first.user_id
    assert len(await scim_server.users(request.onboarding_id)) == 1


async def test_concurrent_creates_for_one_onboarding_make_one_user(scim: ScimIdentity, scim_server: ScimServer):
    request = applicant(HANNA)

    records = await asyncio.gather(*(scim.create_user(request) for _ in range(4)))

    assert len({record.user_id for record in records}) == 1
    assert len(await scim_server.users(request.onboarding_id)) == 1


async def test_deactivating_makes_the_user_inactive_and_twice_is_fine(scim: ScimIdentity, scim_server: ScimServer):
    request = applicant(MAREK)
    record = await scim.create_user(request)

    undone = await scim.deactivate_user(undo_call(request.onboarding_id))
    again = await scim.deactivate_user(undo_call(request.onboarding_id))

    assert undone.found and undone.detail == f"user {record.user_id} deactivated"
    assert again.found and "already deactivated" in again.detail
    [user] = await scim_server.users(request.onboarding_id)
    assert user["active"] is False
    assert user["userName"] == request.email  # deactivated, not rewritten or deleted


async def test_a_create_repeated_after_its_compensation_returns_the_inactive_user_as_is(
        scim: ScimIdentity, scim_server: ScimServer):
    request = applicant(ADA)
    first = await scim.create_user(request)
    await scim.deactivate_user(undo_call(request.onboarding_id))

    again = await scim.create_user(request)

    assert again.user_id == first.user_id and not again.active
    [user] = await scim_server.users(request.onboarding_id)
    assert user["active"] is False


async def test_deactivating_an_unknown_onboarding_finds_nothing(scim: ScimIdentity):
    undone = await scim.deactivate_user(undo_call(f"onboarding-{uuid.uuid4()}"))

    assert not undone.found and undone.system == "scim"


async def test_a_user_name_taken_by_another_onboarding_is_rejected_without_naming_it(
        scim: ScimIdentity, scim_server: ScimServer):
    taken = applicant(ZEBULON)
    await scim.create_user(taken)
    other = applicant(ZEBULON).model_copy(update={"email": taken.email})

    with pytest.raises(ApplicationError) as raised:
        await scim.create_user(other)

    assert raised.value.type == CONNECTOR_REJECTED and raised.value.non_retryable
    assert taken.email not in str(raised.value) and ZEBULON not in str(raised.value)
    assert await scim_server.users(other.onboarding_id) == []
    assert len(await scim_server.users(taken.onboarding_id)) == 1


async def test_an_email_scim_refuses_is_rejected_before_anything_is_sent(scim: ScimIdentity, scim_server: ScimServer):
    request = applicant(HANNA).model_copy(update={"email": "hanna.becker@@example.com"})

    with pytest.raises(ApplicationError) as raised:
        await scim.create_user(request)

    assert raised.value.type == CONNECTOR_REJECTED and raised.value.non_retryable
    assert "hanna.becker" not in str(raised.value)
    assert await scim_server.users(request.onboarding_id) == []


async def test_a_wrong_token_is_misconfigured(scim_server: ScimServer, base: Settings):
    wrong = "scim-wrong-" + uuid.uuid4().hex
    watch("a refused SCIM token", wrong)
    scim = ScimIdentity(scim_server.settings(base).model_copy(update={"scim_token": SecretStr(wrong)}))

    for attempt in (lambda: scim.create_user(applicant(MAREK)), lambda: scim.deactivate_user(undo_call("any"))):
        with pytest.raises(ApplicationError) as raised:
            await attempt()
        assert raised.value.type == CONNECTOR_MISCONFIGURED and raised.value.non_retryable
        assert wrong not in str(raised.value)


async def test_no_scim_url_is_misconfigured(base: Settings):
    scim = ScimIdentity(base.model_copy(update={"identity_connector": "scim", "scim_url": None}))

    with pytest.raises(ApplicationError) as raised:
        await scim.create_user(applicant(ADA))

    assert raised.value.type == CONNECTOR_MISCONFIGURED and raised.value.non_retryable


async def test_a_base_url_without_users_is_misconfigured(scim_server: ScimServer, base: Settings):
    settings = scim_server.settings(base)
    scim = ScimIdentity(settings.model_copy(update={"scim_url": settings.scim_url.removesuffix("/v2") + "/nowhere"}))

    with pytest.raises(ApplicationError) as raised:
        await scim.deactivate_user(undo_call("onboarding-any"))

    assert raised.value.type == CONNECTOR_MISCONFIGURED and raised.value.non_retryable


async def test_a_server_that_is_down_is_retryable(base: Settings):
    down = base.model_copy(update={"identity_connector": "scim", "scim_url": f"http://127.0.0.1:{free_port()}/v2",
                                   "scim_token": SecretStr("unused")})
    scim = ScimIdentity(down)

    for attempt in (lambda: scim.create_user(applicant(LUKASZ)), lambda: scim.deactivate_user(undo_call("any"))):
        with pytest.raises(ApplicationError) as raised:
            await attempt()
        assert raised.value.type == CONNECTOR_UNAVAILABLE and not raised.value.non_retryable


async def test_a_server_without_patch_is_deactivated_by_replacing_the_user(tmp_path: Path, base: Settings):
    async with running_scim_server(tmp_path, patch=False) as server:
        scim = ScimIdentity(server.settings(base))
        request = applicant(HANNA)
        record = await scim.create_user(request)

        undone = await scim.deactivate_user(undo_call(request.onboarding_id))
        again = await scim.deactivate_user(undo_call(request.onboarding_id))

        assert undone.found and undone.detail == f"user {record.user_id} deactivated"
        assert "already deactivated" in again.detail
        [user] = await server.users(request.onboarding_id)
        assert user["active"] is False
        # Replaced whole: what was not changed is still there.
        assert user["userName"] == request.email and user["name"]["formatted"] == HANNA
        assert user["emails"] == [{"value": request.email, "type": "work", "primary": True}]

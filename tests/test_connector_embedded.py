"""The embedded connectors: CRM, identity and billing in one encrypted SQLite file under the data dir,
exercised directly (no Temporal) on a data dir of each test's own."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities.connectors.embedded import (
    SCHEMA_VERSION,
    EmbeddedBilling,
    EmbeddedCrm,
    EmbeddedIdentity,
    describe,
)
from activities.connectors.errors import CONNECTOR_MISCONFIGURED, CONNECTOR_REJECTED
from activities.connectors.models import (
    AccountRequest,
    ConnectorCall,
    SubscriptionRequest,
    Undone,
    UserRequest,
)
from steward.settings import Settings
from tests.conftest import TEST_APPLICANT_NAMES, TEST_ENCRYPTION_KEYS
from tests.support import watch

ONBOARDING = "customer-onboarding-globex-1"
COMPANY = "Globex Corporation"
PERSON = TEST_APPLICANT_NAMES[4]  # not ASCII: its UTF-8 bytes are what a leak would look like
EMAIL = "lukasz.zolc@example.org"
OTHER_PERSON = TEST_APPLICANT_NAMES[2]
OTHER_EMAIL = "zebulon@example.org"
watch("an applicant's email", EMAIL, OTHER_EMAIL)


@pytest.fixture
def connector_settings(tmp_path: Path) -> Settings:
    """A data dir the connectors create themselves (so its mode is theirs), with the suite's test key."""
    return Settings(data_dir=tmp_path / "data", encryption_keys=TEST_ENCRYPTION_KEYS,
                    billing_plans={"starter": "price_starter", "team": "price_team_monthly"}, billing_trial_days=30)


def account_request(key: str = "create-account", onboarding_id: str = ONBOARDING, company: str = COMPANY,
                    email: str = EMAIL) -> AccountRequest:
    return AccountRequest(onboarding_id=onboarding_id, idempotency_key=key, company_name=company, plan="team",
                          country="DE", contact_email=email)


def user_request(key: str = "create-user", onboarding_id: str = ONBOARDING, name: str = PERSON,
                 email: str = EMAIL) -> UserRequest:
    return UserRequest(onboarding_id=onboarding_id, idempotency_key=key, full_name=name, email=email)


def subscription_request(key: str = "create-subscription", onboarding_id: str = ONBOARDING, plan: str = "team",
                         email: str = EMAIL) -> SubscriptionRequest:
    return SubscriptionRequest(onboarding_id=onboarding_id, idempotency_key=key, company_name=COMPANY, email=email,
                               plan=plan, country="DE")


def call(key: str, onboarding_id: str = ONBOARDING) -> ConnectorCall:
    return ConnectorCall(onboarding_id=onboarding_id, idempotency_key=key)


@contextmanager
def raw_database(settings: Settings) -> Iterator[sqlite3.Connection]:
    """A plain connection to the file, as an operator's sqlite3 would open it. While it is open the
    -wal file stays on disk (SQLite removes it when the last connection closes)."""
    assert settings.connectors_db_path.exists()
    with closing(sqlite3.connect(settings.connectors_db_path, isolation_level=None)) as db:
        db.execute("SELECT count(*) FROM sqlite_schema").fetchone()  # SQLite opens the WAL on first read
        yield db


def row_counts(settings: Settings) -> dict[str, int]:
    with raw_database(settings) as db:
        return {table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("accounts", "users", "subscriptions")}


async def test_an_account_is_created_pending_then_activated_then_archived(connector_settings):
    crm = EmbeddedCrm(connector_settings)
    created = await crm.create_account(account_request())
    assert created.system == "embedded" and created.status == "pending" and created.account_id.startswith("acct_")

    activated = await crm.activate_account(call("activate-account"))
    assert activated == created.model_copy(update={"status": "active"})
    assert await crm.activate_account(call("activate-account")) == activated

    archived = await crm.archive_account(call("archive-account"))
    assert archived == Undone(system="embedded", found=True, detail=f"account {created.account_id} archived")
    again = await crm.archive_account(call("archive-account"))
    assert again == Undone(system="embedded", found=True, detail=f"account {created.account_id} already archived")

    row = describe(connector_settings, ONBOARDING)["account"]
    assert row["status"] == "archived" and row["idempotency_key"] == "create-account"
    assert (row["company_name"], row["plan"], row["country"], row["contact_email"]) == (COMPANY, "team", "DE", EMAIL)
    created_at, updated_at = datetime.fromisoformat(row["created_at"]), datetime.fromisoformat(row["updated_at"])
    assert created_at.utcoffset() == timedelta(0) and created_at <= updated_at


async def test_activating_an_account_never_created_or_archived_is_rejected_without_retry(connector_settings):
    crm = EmbeddedCrm(connector_settings)
    with pytest.raises(ApplicationError) as never_created:
        await crm.activate_account(call("activate-account"))
    assert never_created.value.type == CONNECTOR_REJECTED and never_created.value.non_retryable

    await crm.create_account(account_request())
    await crm.archive_account(call("archive-account"))
    with pytest.raises(ApplicationError) as archived:
        await crm.activate_account(call("activate-account"))
    assert archived.value.type == CONNECTOR_REJECTED and archived.value.non_retryable
    assert describe(connector_settings, ONBOARDING)["account"]["status"] == "archived"


async def test_a_user_is_created_active_then_deactivated_once(connector_settings):
    identity = EmbeddedIdentity(connector_settings)
    created = await identity.create_user(user_request())
    assert created.system == "embedded" and created.active and created.user_id.startswith("user_")

    deactivated = await identity.deactivate_user(call("deactivate-user"))
    assert deactivated == Undone(system="embedded", found=True, detail=f"user {created.user_id} deactivated")
    again = await identity.deactivate_user(call("deactivate-user"))
    assert again == Undone(system="embedded", found=True, detail=f"user {created.user_id} already deactivated")

    row = describe(connector_settings, ONBOARDING)["user"]
    assert (row["user_id"], row["full_name"], row["email"], row["status"]) == (
        created.user_id, PERSON, EMAIL, "deactivated")


async def test_a_subscription_trials_on_the_configured_billing_plan_until_cancelled(connector_settings):
    billing = EmbeddedBilling(connector_settings)
    created = await billing.create_subscription(subscription_request())
    assert created.system == "embedded" and created.status == "trialing"
    assert created.plan == "price_team_monthly"
    assert created.customer_id.startswith("cus_") and created.subscription_id.startswith("sub_")

    row = describe(connector_settings, ONBOARDING)["subscription"]
    assert (row["plan"], row["plan_id"], row["email"]) == ("team", "price_team_monthly", EMAIL)
    trial = datetime.fromisoformat(row["trial_end"]) - datetime.fromisoformat(row["created_at"])
    assert trial == timedelta(days=30)
    assert datetime.fromisoformat(row["trial_end"]).tzinfo is not None

    cancelled = await billing.cancel_subscription(call("cancel-subscription"))
    assert cancelled == Undone(system="embedded", found=True,
                               detail=f"subscription {created.subscription_id} cancelled")
    again = await billing.cancel_subscription(call("cancel-subscription"))
    assert again.found and again.detail == f"subscription {created.subscription_id} already cancelled"
    assert describe(connector_settings, ONBOARDING)["subscription"]["status"] == "canceled"


async def test_a_plan_with_no_billing_plan_configured_is_a_misconfiguration_that_creates_nothing(connector_settings):
    billing = EmbeddedBilling(connector_settings)
    with pytest.raises(ApplicationError) as refused:
        await billing.create_subscription(subscription_request(plan="enterprise"))
    assert refused.value.type == CONNECTOR_MISCONFIGURED and refused.value.non_retryable
    assert describe(connector_settings, ONBOARDING)["subscription"] is None


async def test_a_repeated_create_returns_the_first_record_whatever_the_idempotency_key(connector_settings):
    crm, identity = EmbeddedCrm(connector_settings), EmbeddedIdentity(connector_settings)
    billing = EmbeddedBilling(connector_settings)

    account = await crm.create_account(account_request())
    assert await crm.create_account(account_request()) == account
    assert await crm.create_account(account_request("a-later-key", company="Globex Renamed")) == account
    user = await identity.create_user(user_request())
    assert await identity.create_user(user_request()) == user
    assert await identity.create_user(user_request("a-later-key", name=OTHER_PERSON, email=OTHER_EMAIL)) == user
    subscription = await billing.create_subscription(subscription_request())
    assert await billing.create_subscription(subscription_request()) == subscription
    assert await billing.create_subscription(subscription_request("a-later-key", plan="starter")) == subscription

    assert row_counts(connector_settings) == {"accounts": 1, "users": 1, "subscriptions": 1}
    rows = describe(connector_settings, ONBOARDING)
    assert rows["account"]["company_name"] == COMPANY and rows["account"]["idempotency_key"] == "create-account"
    assert rows["user"]["full_name"] == PERSON and rows["subscription"]["plan"] == "team"


async def test_another_onboarding_gets_records_of_its_own(connector_settings):
    crm = EmbeddedCrm(connector_settings)
    first = await crm.create_account(account_request())
    second = await crm.create_account(account_request("create-account", onboarding_id="customer-onboarding-initech"))
    assert first.account_id != second.account_id
    assert row_counts(connector_settings)["accounts"] == 2


async def test_undoing_what_was_never_created_finds_nothing(connector_settings):
    nothing = call("undo", onboarding_id="customer-onboarding-never-started")
    assert await EmbeddedCrm(connector_settings).archive_account(nothing) == Undone(
        system="embedded", found=False, detail="no account for this onboarding")
    assert await EmbeddedIdentity(connector_settings).deactivate_user(nothing) == Undone(
        system="embedded", found=False, detail="no user for this onboarding")
    assert await EmbeddedBilling(connector_settings).cancel_subscription(nothing) == Undone(
        system="embedded", found=False, detail="no subscription for this onboarding")
    assert row_counts(connector_settings) == {"accounts": 0, "users": 0, "subscriptions": 0}


async def test_records_survive_a_restart_on_the_same_data_dir(connector_settings):
    account = await EmbeddedCrm(connector_settings).create_account(account_request())
    user = await EmbeddedIdentity(connector_settings).create_user(user_request())
    subscription = await EmbeddedBilling(connector_settings).create_subscription(subscription_request())

    # A restarted worker: settings read anew, connectors built anew, nothing shared in memory.
    restarted = Settings(data_dir=connector_settings.data_dir, encryption_keys=TEST_ENCRYPTION_KEYS,
                         billing_plans=connector_settings.billing_plans)
    crm = EmbeddedCrm(restarted)
    assert await crm.create_account(account_request("create-account-after-restart")) == account
    assert await EmbeddedIdentity(restarted).create_user(user_request()) == user
    assert await EmbeddedBilling(restarted).create_subscription(subscription_request()) == subscription
    assert (await crm.activate_account(call("activate-account"))).account_id == account.account_id

    rows = describe(restarted, ONBOARDING)
    assert rows["account"]["contact_email"] == EMAIL and rows["account"]["status"] == "active"
    assert rows["user"]["full_name"] == PERSON and rows["subscription"]["email"] == EMAIL


async def test_concurrent_creates_for_one_onboarding_make_one_row_each(connector_settings):
    # Eight workers at once, on a data dir with no database yet: they also race to create the file.
    attempts = range(8)
    accounts = await asyncio.gather(*(EmbeddedCrm(connector_settings).create_account(account_request(f"key-{n}"))
                                      for n in attempts))
    users = await asyncio.gather(*(EmbeddedIdentity(connector_settings).create_user(user_request(f"key-{n}"))
                                   for n in attempts))
    subscriptions = await asyncio.gather(*(
        EmbeddedBilling(connector_settings).create_subscription(subscription_request(f"key-{n}")) for n in attempts))

    assert len({a.account_id for a in accounts}) == 1
    assert len({u.user_id for u in users}) == 1
    assert len({s.subscription_id for s in subscriptions}) == 1
    assert row_counts(connector_settings) == {"accounts": 1, "users": 1, "subscriptions": 1}


async def test_no_personal_value_is_stored_in_plaintext_in_the_database_or_its_wal(connector_settings):
    await EmbeddedCrm(connector_settings).create_account(account_request())
    data_dir = connector_settings.data_dir
    with raw_database(connector_settings):  # keeps the -wal file on disk, with the latest writes in it
        await EmbeddedCrm(connector_settings).create_account(
            account_request(onboarding_id="customer-onboarding-other", email=OTHER_EMAIL))
        await EmbeddedIdentity(connector_settings).create_user(user_request())
        await EmbeddedIdentity(connector_settings).create_user(
            user_request(onboarding_id="customer-onboarding-other", name=OTHER_PERSON, email=OTHER_EMAIL))
        await EmbeddedBilling(connector_settings).create_subscription(subscription_request())
        stored = {path.name: path.read_bytes() for path in data_dir.iterdir() if path.is_file()}

    wal = f"{connector_settings.connectors_db_path.name}-wal"
    # Controls: the search reads both files, and finds a value that is kept in clear.
    assert stored[connector_settings.connectors_db_path.name] and stored[wal]
    assert COMPANY.encode() in stored[wal]
    for value in (PERSON, OTHER_PERSON, EMAIL, OTHER_EMAIL, "Zebulon", "zolc"):
        assert [name for name, data in stored.items() if value.encode() in data] == [], f"{value!r} found at rest"
    # ...and the values are there, for whoever holds the key.
    assert describe(connector_settings, "customer-onboarding-other")["user"]["full_name"] == OTHER_PERSON


async def test_the_database_files_and_their_directory_are_private(connector_settings):
    await EmbeddedCrm(connector_settings).create_account(account_request())
    path = connector_settings.connectors_db_path
    with raw_database(connector_settings):
        await EmbeddedIdentity(connector_settings).create_user(user_request())
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
    assert modes == {path.name: 0o600, f"{path.name}-wal": 0o600, f"{path.name}-shm": 0o600}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


async def test_the_schema_version_is_recorded_and_a_newer_one_is_refused(connector_settings):
    crm = EmbeddedCrm(connector_settings)
    await crm.create_account(account_request())
    with raw_database(connector_settings) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 1
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")  # what a newer Steward would leave

    with pytest.raises(ApplicationError) as refused:
        await crm.archive_account(call("archive-account"))
    assert refused.value.type == CONNECTOR_MISCONFIGURED and refused.value.non_retryable
    assert "schema version 2" in refused.value.message


async def test_describing_an_onboarding_before_any_record_exists_creates_no_file(connector_settings):
    assert describe(connector_settings, ONBOARDING) == {"account": None, "user": None, "subscription": None}
    assert not connector_settings.connectors_db_path.exists()


# A worker process of its own: settings from its environment, as `steward up` starts one.
WORKER = """
import asyncio, sys
from activities.connectors.embedded import EmbeddedCrm
from activities.connectors.models import AccountRequest
from steward.settings import Settings
request = AccountRequest.model_validate_json(sys.argv[1])
print(asyncio.run(EmbeddedCrm(Settings()).create_account(request)).account_id)
"""


async def test_processes_creating_for_one_onboarding_at_once_share_one_file_and_one_row(connector_settings):
    # The worker and the CPU pool are separate processes: SQLite's file locks, not a lock in
    # memory, must keep them to one database file and one row.
    env = {**os.environ, "STEWARD_DATA_DIR": str(connector_settings.data_dir),
           "STEWARD_ENCRYPTION_KEYS": TEST_ENCRYPTION_KEYS}
    workers = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", WORKER, account_request(f"key-{n}").model_dump_json(), env=env,
        cwd=Path(__file__).parent.parent, stdout=asyncio.subprocess.PIPE) for n in range(2)]
    try:
        outputs = [await worker.communicate() for worker in workers]
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
    assert [worker.returncode for worker in workers] == [0, 0]
    ids = {stdout.decode().strip() for stdout, _ in outputs}
    assert len(ids) == 1 and ids.pop().startswith("acct_")
    assert row_counts(connector_settings)["accounts"] == 1
    assert [p.name for p in connector_settings.data_dir.iterdir()] == [connector_settings.connectors_db_path.name]

"""The embedded CRM, identity and billing systems: one SQLite database under the data dir.

`make up` must onboard a customer with no outside system, so the default implementation of all
three connector interfaces keeps its accounts, users and subscriptions here. One database rather
than three because the three are one stand-in: an operator reads (or deletes) one file, `describe`
shows everything an onboarding made in one transaction, and the worker and the CPU pool share one
lock. The rules are the remote connectors' rules: a create first looks for what an earlier attempt
made, so one onboarding_id never gets a second row whatever the idempotency key; an undo of
nothing is `Undone(found=False)`.

Personal data is encrypted at rest (contact_email, full_name, email), with the platform keyring
(steward/codec.py, AES-256-GCM) that already encrypts every Temporal payload and artifact: the data
dir promises to hold no applicant's data in clear, and a copy of this file must not break that.
Company names, plans, countries and statuses stay readable: business data an operator needs
without keys. Emails are not checked for uniqueness: that would need a deterministic keyed hash of
each one at rest, a pseudonym linking records across onboardings, and the stand-in has no sign-in
for which two users with one email would be ambiguous.

The file survives restarts, is private (0600) and versioned: steward/databases.py, which it
shares with the webhook subscriptions.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from activities.connectors.errors import misconfigured, rejected, unavailable
from activities.connectors.models import (
    AccountRecord,
    AccountRequest,
    ConnectorCall,
    SubscriptionRecord,
    SubscriptionRequest,
    Undone,
    UserRecord,
    UserRequest,
)
from steward.codec import Keyring, KeyringError
from steward import databases
from steward.settings import Settings

SYSTEM = "embedded"
SCHEMA_VERSION = 1
T = TypeVar("T")

# STRICT: SQLite refuses a value of the wrong type instead of storing it. key_id names the keyring
# key that encrypted the row's BLOB columns (the personal ones), so keys can rotate.
_SCHEMA = databases.Schema(SCHEMA_VERSION, (
    """
    CREATE TABLE IF NOT EXISTS accounts (
        account_id      TEXT PRIMARY KEY,
        onboarding_id   TEXT NOT NULL UNIQUE,
        idempotency_key TEXT NOT NULL,
        company_name    TEXT NOT NULL,
        plan            TEXT NOT NULL,
        country         TEXT NOT NULL,
        key_id          TEXT NOT NULL,
        contact_email   BLOB NOT NULL,
        status          TEXT NOT NULL CHECK (status IN ('pending', 'active', 'archived')),
        created_at      TEXT NOT NULL,
        updated_at      TEXT NOT NULL
    ) STRICT
    """,
    """
    CREATE TABLE IF NOT EXISTS users (
        user_id         TEXT PRIMARY KEY,
        onboarding_id   TEXT NOT NULL UNIQUE,
        idempotency_key TEXT NOT NULL,
        key_id          TEXT NOT NULL,
        full_name       BLOB NOT NULL,
        email           BLOB NOT NULL,
        status          TEXT NOT NULL CHECK (status IN ('active', 'deactivated')),
        created_at      TEXT NOT NULL,
        updated_at      TEXT NOT NULL
    ) STRICT
    """,
    """
    CREATE TABLE IF NOT EXISTS subscriptions (
        subscription_id TEXT PRIMARY KEY,
        customer_id     TEXT NOT NULL UNIQUE,
        onboarding_id   TEXT NOT NULL UNIQUE,
        idempotency_key TEXT NOT NULL,
        company_name    TEXT NOT NULL,
        country         TEXT NOT NULL,
        plan            TEXT NOT NULL,
        plan_id         TEXT NOT NULL,
        key_id          TEXT NOT NULL,
        email           BLOB NOT NULL,
        status          TEXT NOT NULL CHECK (status IN ('trialing', 'active', 'canceled')),
        trial_end       TEXT NOT NULL,
        created_at      TEXT NOT NULL,
        updated_at      TEXT NOT NULL
    ) STRICT
    """,
))


@dataclass(frozen=True)
class _Table:
    name: str
    id_column: str
    noun: str
    personal: tuple[str, ...]  # the encrypted columns


ACCOUNTS = _Table("accounts", "account_id", "account", ("contact_email",))
USERS = _Table("users", "user_id", "user", ("full_name", "email"))
SUBSCRIPTIONS = _Table("subscriptions", "subscription_id", "subscription", ("email",))
TABLES = (ACCOUNTS, USERS, SUBSCRIPTIONS)


class _Database:
    """The connectors' database: one connection and one short transaction per operation.

    A connection per call because a connection cannot move between the threads `asyncio.to_thread`
    picks, and opening a local file costs microseconds.
    """

    def __init__(self, settings: Settings) -> None:
        self.path = settings.connectors_db_path
        # A writer holds the lock for microseconds; waiting as long as any connector call may means trouble.
        self.busy_timeout_s = settings.connector_timeout_s
        try:
            self.keyring = Keyring.from_settings(settings)
        except KeyringError as error:
            raise misconfigured(SYSTEM, str(error)) from error

    async def change(self, what: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` in one BEGIN IMMEDIATE transaction, off the event loop. IMMEDIATE takes the write
        lock before the first read, so two creates for one onboarding cannot both see no row."""
        return await asyncio.to_thread(self.run, what, work, "IMMEDIATE")

    def run(self, what: str, work: Callable[[sqlite3.Connection], T], mode: str = "DEFERRED") -> T:
        try:
            with closing(self._connect()) as db:
                return databases.transaction(db, work, mode)
        except sqlite3.OperationalError as error:
            # Locked past the busy timeout, disk full or unreadable: a later attempt may succeed.
            # SQLite's message names no value, only what failed.
            raise unavailable(SYSTEM, f"{what}: the database failed ({error})") from error

    async def create(self, table: _Table, request: ConnectorCall, values: dict[str, Any], personal: dict[str, str],
                     now: datetime | None = None) -> sqlite3.Row:
        """The onboarding's row in `table`: the one an earlier attempt made, else a new one."""

        def find_or_insert(db: sqlite3.Connection) -> sqlite3.Row:
            existing = _find(db, table, request.onboarding_id)
            if existing is not None:
                return existing
            stamp = _timestamp(now or datetime.now(UTC))
            row = {"onboarding_id": request.onboarding_id, "idempotency_key": request.idempotency_key, **values,
                   **self._seal(personal), "created_at": stamp, "updated_at": stamp}
            db.execute(f"INSERT INTO {table.name} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                       tuple(row.values()))
            return _find(db, table, request.onboarding_id)

        return await self.change(f"creating the {table.noun}", find_or_insert)

    async def undo(self, table: _Table, call: ConnectorCall, status: str, done: str) -> Undone:
        """Set the onboarding's row to `status` (`done` is that in words), safe on nothing and twice."""

        def set_status(db: sqlite3.Connection) -> Undone:
            row = _find(db, table, call.onboarding_id)
            if row is None:
                return Undone(system=SYSTEM, found=False, detail=f"no {table.noun} for this onboarding")
            record = f"{table.noun} {row[table.id_column]}"
            if row["status"] == status:
                return Undone(system=SYSTEM, found=True, detail=f"{record} already {done}")
            _set_status(db, table, call.onboarding_id, status)
            return Undone(system=SYSTEM, found=True, detail=f"{record} {done}")

        return await self.change(f"undoing the {table.noun}", set_status)

    def _seal(self, personal: dict[str, str]) -> dict[str, Any]:
        sealed: dict[str, Any] = {}
        for column, text in personal.items():
            key_id, sealed[column] = self.keyring.encrypt(text.encode())
        return {"key_id": key_id, **sealed}

    def unseal(self, table: _Table, row: sqlite3.Row | None) -> dict[str, Any] | None:
        if row is None:
            return None
        clear = {column: row[column] for column in row.keys() if column != "key_id"}
        for column in table.personal:
            clear[column] = self.keyring.decrypt(row["key_id"], row[column]).decode()
        return clear

    def _connect(self) -> sqlite3.Connection:
        try:
            return databases.connect(self.path, _SCHEMA, busy_timeout_s=self.busy_timeout_s)
        except databases.SchemaTooNew as error:
            raise misconfigured(SYSTEM, str(error)) from error


def _find(db: sqlite3.Connection, table: _Table, onboarding_id: str) -> sqlite3.Row | None:
    return db.execute(f"SELECT * FROM {table.name} WHERE onboarding_id = ?", (onboarding_id,)).fetchone()


def _set_status(db: sqlite3.Connection, table: _Table, onboarding_id: str, status: str) -> None:
    db.execute(f"UPDATE {table.name} SET status = ?, updated_at = ? WHERE onboarding_id = ?",
               (status, _timestamp(datetime.now(UTC)), onboarding_id))


def _timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


class EmbeddedCrm:
    """Accounts: created pending, activated when the onboarding completes, archived by its saga."""

    system = SYSTEM

    def __init__(self, settings: Settings) -> None:
        self._db = _Database(settings)

    async def create_account(self, request: AccountRequest) -> AccountRecord:
        values = {"account_id": _new_id("acct"), "company_name": request.company_name, "plan": request.plan,
                  "country": request.country, "status": "pending"}
        row = await self._db.create(ACCOUNTS, request, values, {"contact_email": request.contact_email})
        return AccountRecord(system=SYSTEM, account_id=row["account_id"], status=row["status"])

    async def activate_account(self, call: ConnectorCall) -> AccountRecord:
        def activate(db: sqlite3.Connection) -> AccountRecord:
            row = _find(db, ACCOUNTS, call.onboarding_id)
            # The statuses an HTTP CRM would answer, so a workflow treats both connectors alike.
            if row is None:
                raise rejected(SYSTEM, "there is no account for this onboarding to activate", 404)
            if row["status"] == "archived":
                raise rejected(SYSTEM, f"account {row['account_id']} is archived and cannot be activated", 409)
            if row["status"] == "pending":
                _set_status(db, ACCOUNTS, call.onboarding_id, "active")
            return AccountRecord(system=SYSTEM, account_id=row["account_id"], status="active")

        return await self._db.change("activating the account", activate)

    async def archive_account(self, call: ConnectorCall) -> Undone:
        return await self._db.undo(ACCOUNTS, call, "archived", "archived")


class EmbeddedIdentity:
    """Users, one per onboarding: created active, deactivated (never deleted) by the saga."""

    system = SYSTEM

    def __init__(self, settings: Settings) -> None:
        self._db = _Database(settings)

    async def create_user(self, request: UserRequest) -> UserRecord:
        values = {"user_id": _new_id("user"), "status": "active"}
        row = await self._db.create(USERS, request, values, {"full_name": request.full_name, "email": request.email})
        return UserRecord(system=SYSTEM, user_id=row["user_id"], active=row["status"] == "active")

    async def deactivate_user(self, call: ConnectorCall) -> Undone:
        return await self._db.undo(USERS, call, "deactivated", "deactivated")


class EmbeddedBilling:
    """A customer and its subscription, trialing on the billing plan `settings.billing_plans` names."""

    system = SYSTEM

    def __init__(self, settings: Settings) -> None:
        self._db = _Database(settings)
        self._plans = settings.billing_plans
        self._trial = timedelta(days=settings.billing_trial_days)

    async def create_subscription(self, request: SubscriptionRequest) -> SubscriptionRecord:
        plan_id = self._plans.get(request.plan)
        if plan_id is None:
            raise misconfigured(SYSTEM, f"STEWARD_BILLING_PLANS names no billing plan for {request.plan!r}")
        now = datetime.now(UTC)
        values = {"subscription_id": _new_id("sub"), "customer_id": _new_id("cus"),
                  "company_name": request.company_name, "country": request.country, "plan": request.plan,
                  "plan_id": plan_id, "status": "trialing", "trial_end": _timestamp(now + self._trial)}
        row = await self._db.create(SUBSCRIPTIONS, request, values, {"email": request.email}, now=now)
        return SubscriptionRecord(system=SYSTEM, customer_id=row["customer_id"],
                                  subscription_id=row["subscription_id"], plan=row["plan_id"], status=row["status"])

    async def cancel_subscription(self, request: SubscriptionRequest) -> Undone:
        # "canceled" is the status as Stripe spells it, so a run's view reads alike for both billing connectors.
        return await self._db.undo(SUBSCRIPTIONS, request, "canceled", "cancelled")


def describe(settings: Settings, onboarding_id: str) -> dict[str, dict[str, Any] | None]:
    """The account, user and subscription rows of an onboarding (None where there is none), their
    personal columns decrypted: for operators, tests and a run's details. It returns personal
    data: show it only to whom may see it, and never log it. Reads without creating the file."""
    database = _Database(settings)
    if not database.path.exists():
        return {table.noun: None for table in TABLES}
    rows = database.run("reading an onboarding", lambda db: [_find(db, table, onboarding_id) for table in TABLES])
    return {table.noun: database.unseal(table, row) for table, row in zip(TABLES, rows, strict=True)}

"""Webhook subscriptions and their delivery log: one SQLite database under the data dir
(steward/databases.py), shared by the API (which manages subscriptions) and the workers (which
deliver).

A subscription belongs to a tenant and names a URL, the event types it wants and optionally the
workflows. Its signing secrets never leave this file in clear: they are encrypted with the
platform keyring, as are URLs (a URL may carry a token). A run's `callback_url` is a subscription
too (kind "callback", bound to one run, terminal events only, signed with the platform secret),
so it is delivered, retried and logged by the same machinery; the API lists only kind
"subscription".

The delivery log has one row per (subscription, event) — the unit a receiver de-duplicates — and
one row per HTTP attempt of it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import sqlite3
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field

from activities.events.model import Event
from steward import databases
from steward.codec import Keyring
from steward.settings import Settings

T = TypeVar("T")
Status = Literal["active", "paused", "disabled"]
DeliveryStatus = Literal["pending", "delivered", "failed", "skipped"]
SECRET_PREFIX = "whsec_"
BUSY_TIMEOUT_S = 10.0
# What a delivery keeps of an attempt's error: enough to act on, never a receiver's whole answer.
ERROR_CHARS = 200

_SCHEMA = databases.Schema(1, (
    """
    CREATE TABLE IF NOT EXISTS subscriptions (
        subscription_id   TEXT PRIMARY KEY,
        tenant            TEXT NOT NULL,
        kind              TEXT NOT NULL CHECK (kind IN ('subscription', 'callback')),
        run_id            TEXT,
        key_id            TEXT NOT NULL,
        url               BLOB NOT NULL,
        secret            BLOB,
        previous_secret   BLOB,
        previous_until    TEXT,
        event_types       TEXT NOT NULL,
        workflows         TEXT NOT NULL,
        description       TEXT,
        status            TEXT NOT NULL CHECK (status IN ('active', 'paused', 'disabled')),
        status_reason     TEXT,
        created_by        TEXT NOT NULL,
        created_at        TEXT NOT NULL,
        updated_at        TEXT NOT NULL
    ) STRICT
    """,
    "CREATE INDEX IF NOT EXISTS subscriptions_by_tenant ON subscriptions (tenant, kind, run_id)",
    """
    CREATE TABLE IF NOT EXISTS deliveries (
        delivery_id       TEXT PRIMARY KEY,
        subscription_id   TEXT NOT NULL,
        event_id          TEXT NOT NULL,
        event_type        TEXT NOT NULL,
        run_id            TEXT,
        event             TEXT NOT NULL,
        status            TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'skipped')),
        status_reason     TEXT,
        created_at        TEXT NOT NULL,
        updated_at        TEXT NOT NULL,
        UNIQUE (subscription_id, event_id)
    ) STRICT
    """,
    "CREATE INDEX IF NOT EXISTS deliveries_by_subscription ON deliveries (subscription_id, created_at)",
    """
    CREATE TABLE IF NOT EXISTS attempts (
        delivery_id       TEXT NOT NULL,
        number            INTEGER NOT NULL,
        at                TEXT NOT NULL,
        status_code       INTEGER,
        latency_ms        REAL NOT NULL,
        error             TEXT,
        PRIMARY KEY (delivery_id, number)
    ) STRICT
    """,
))


class Subscription(BaseModel):
    """A subscription as the API shows it: never its secrets."""

    id: str
    url: str
    event_types: list[str]
    workflows: list[str] = Field(description="Only these workflows' events; empty: every workflow's.")
    description: str | None
    status: Status
    status_reason: str | None = Field(description="Why it is paused or disabled.")
    created_by: str
    created_at: datetime
    updated_at: datetime
    previous_secret_valid_until: datetime | None = Field(
        description="After a rotation, until when the old secret still signs beside the new one.")


class Target(BaseModel):
    """What a delivery needs of its subscription: where, and the secrets that sign."""

    subscription_id: str
    tenant: str
    kind: Literal["subscription", "callback"]
    url: str
    secrets: list[str] = Field(description="Each signs: the current one first; empty means the platform secret.")
    status: Status


class Attempt(BaseModel):
    number: int
    at: datetime
    status_code: int | None
    latency_ms: float
    error: str | None


class Delivery(BaseModel):
    id: str
    event_id: str
    event_type: str
    run_id: str | None
    status: DeliveryStatus
    status_reason: str | None
    created_at: datetime
    updated_at: datetime
    attempts: list[Attempt]


class Interest(BaseModel):
    subscription_id: str
    status: Status
    event_types: list[str]
    workflows: list[str]

    def wants(self, event: Event) -> bool:
        # Tenant events (no workflow) reach every subscription to their type.
        return (("*" in self.event_types or event.type in self.event_types)
                and (not self.workflows or event.workflow is None or event.workflow in self.workflows))


class SubscriptionNotFound(LookupError):
    pass


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class SubscriptionStore:
    def __init__(self, settings: Settings, keyring: Keyring) -> None:
        self.path = settings.subscriptions_db_path
        self.keyring = keyring
        self.grace = timedelta(hours=settings.subscription_secret_grace_hours)

    # --- plumbing -----------------------------------------------------------------------------

    def _run(self, work: Callable[[sqlite3.Connection], T], mode: str = "DEFERRED") -> T:
        with closing(databases.connect(self.path, _SCHEMA, busy_timeout_s=BUSY_TIMEOUT_S)) as db:
            return databases.transaction(db, work, mode)

    async def _change(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._run, work, "IMMEDIATE")

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._run, work)

    def _seal(self, text: str, key_id: str) -> bytes:
        kid, blob = self.keyring.encrypt(text.encode())
        assert kid == key_id
        return blob

    def _open(self, row: sqlite3.Row, column: str) -> str | None:
        blob = row[column]
        return None if blob is None else self.keyring.decrypt(row["key_id"], blob).decode()

    def _shown(self, row: sqlite3.Row) -> Subscription:
        until = _when(row["previous_until"])
        return Subscription(
            id=row["subscription_id"], url=self._open(row, "url") or "", event_types=json.loads(row["event_types"]),
            workflows=json.loads(row["workflows"]), description=row["description"], status=row["status"],
            status_reason=row["status_reason"], created_by=row["created_by"], created_at=_when(row["created_at"]),
            updated_at=_when(row["updated_at"]),
            previous_secret_valid_until=until if until and until > datetime.now(UTC) else None,
        )

    @staticmethod
    def _row(db: sqlite3.Connection, tenant: str, subscription_id: str) -> sqlite3.Row:
        row = db.execute("SELECT * FROM subscriptions WHERE subscription_id = ? AND tenant = ? AND kind = "
                         "'subscription'", (subscription_id, tenant)).fetchone()
        if row is None:
            raise SubscriptionNotFound(subscription_id)
        return row

    # --- managing (the API) -------------------------------------------------------------------

    async def create(self, tenant: str, *, url: str, event_types: list[str], workflows: list[str],
                     description: str | None, created_by: str) -> tuple[Subscription, str]:
        """A new active subscription, and its signing secret: shown this once."""
        secret = new_secret()
        subscription_id = "sub_" + secrets.token_hex(12)

        def insert(db: sqlite3.Connection) -> Subscription:
            stamp = _now()
            key_id = self.keyring.active
            db.execute(
                "INSERT INTO subscriptions (subscription_id, tenant, kind, run_id, key_id, url, secret, event_types, "
                "workflows, description, status, created_by, created_at, updated_at) "
                "VALUES (?, ?, 'subscription', NULL, ?, ?, ?, ?, ?, ?, 'active', ?, ?, ?)",
                (subscription_id, tenant, key_id, self._seal(url, key_id), self._seal(secret, key_id),
                 json.dumps(event_types), json.dumps(workflows), description, created_by, stamp, stamp))
            return self._shown(self._row(db, tenant, subscription_id))

        return await self._change(insert), secret

    async def list(self, tenant: str) -> list[Subscription]:
        def rows(db: sqlite3.Connection) -> list[Subscription]:
            return [self._shown(row) for row in db.execute(
                "SELECT * FROM subscriptions WHERE tenant = ? AND kind = 'subscription' ORDER BY created_at",
                (tenant,))]

        return await self._read(rows)

    async def get(self, tenant: str, subscription_id: str) -> Subscription:
        return await self._read(lambda db: self._shown(self._row(db, tenant, subscription_id)))

    async def update(self, tenant: str, subscription_id: str, *, url: str | None = None,
                     event_types: list[str] | None = None, workflows: list[str] | None = None,
                     description: str | None = None, status: Status | None = None,
                     status_reason: str | None = None) -> Subscription:
        def change(db: sqlite3.Connection) -> Subscription:
            row = self._row(db, tenant, subscription_id)
            values: dict[str, Any] = {"updated_at": _now()}
            if url is not None:
                values |= {"key_id": self.keyring.active, "url": self._seal(url, self.keyring.active),
                           "secret": self._seal(self._open(row, "secret") or "", self.keyring.active)}
                if row["previous_secret"] is not None:
                    values["previous_secret"] = self._seal(self._open(row, "previous_secret") or "",
                                                           self.keyring.active)
            if event_types is not None:
                values["event_types"] = json.dumps(event_types)
            if workflows is not None:
                values["workflows"] = json.dumps(workflows)
            if description is not None:
                values["description"] = description
            if status is not None:
                values |= {"status": status, "status_reason": status_reason}
            _set(db, subscription_id, values)
            return self._shown(self._row(db, tenant, subscription_id))

        return await self._change(change)

    async def rotate_secret(self, tenant: str, subscription_id: str) -> tuple[Subscription, str]:
        """A new secret; the old one keeps signing beside it for the grace period."""
        secret = new_secret()

        def rotate(db: sqlite3.Connection) -> Subscription:
            row = self._row(db, tenant, subscription_id)
            key_id = self.keyring.active
            _set(db, subscription_id, {
                "key_id": key_id, "url": self._seal(self._open(row, "url") or "", key_id),
                "secret": self._seal(secret, key_id),
                "previous_secret": self._seal(self._open(row, "secret") or "", key_id),
                "previous_until": (datetime.now(UTC) + self.grace).isoformat(), "updated_at": _now(),
            })
            return self._shown(self._row(db, tenant, subscription_id))

        return await self._change(rotate), secret

    def reseal(self) -> int:
        """Every row's URL and secrets under the keyring's active key (`steward keys reencrypt`); how
        many rows moved. A row at a time, each in its own transaction: interrupted, the next call
        goes on from where this one stopped, and a row already under the active key is left alone."""
        if not self.path.exists():
            return 0
        key_id = self.keyring.active

        def reseal_next(db: sqlite3.Connection) -> bool:
            row = db.execute("SELECT * FROM subscriptions WHERE key_id != ? LIMIT 1", (key_id,)).fetchone()
            if row is None:
                return False
            _set(db, row["subscription_id"], {"key_id": key_id} | {
                column: None if (text := self._open(row, column)) is None else self._seal(text, key_id)
                for column in ("url", "secret", "previous_secret")})
            return True

        moved = 0
        while self._run(reseal_next, "IMMEDIATE"):
            moved += 1
        return moved

    async def delete(self, tenant: str, subscription_id: str) -> None:
        def remove(db: sqlite3.Connection) -> None:
            self._row(db, tenant, subscription_id)
            db.execute("DELETE FROM attempts WHERE delivery_id IN (SELECT delivery_id FROM deliveries WHERE "
                       "subscription_id = ?)", (subscription_id,))
            db.execute("DELETE FROM deliveries WHERE subscription_id = ?", (subscription_id,))
            db.execute("DELETE FROM subscriptions WHERE subscription_id = ?", (subscription_id,))

        await self._change(remove)

    async def deliveries(self, tenant: str, subscription_id: str, *, limit: int,
                         before: str | None = None) -> list[Delivery]:
        """The newest deliveries first (older than `before`, a delivery id, when given)."""
        def rows(db: sqlite3.Connection) -> list[Delivery]:
            self._row(db, tenant, subscription_id)
            query = "SELECT * FROM deliveries WHERE subscription_id = ?"
            args: list[Any] = [subscription_id]
            if before is not None:
                query += " AND rowid < (SELECT rowid FROM deliveries WHERE delivery_id = ?)"
                args.append(before)
            found = db.execute(query + " ORDER BY rowid DESC LIMIT ?", (*args, limit)).fetchall()
            return [_delivery(db, row) for row in found]

        return await self._read(rows)

    async def delivery(self, tenant: str, subscription_id: str, delivery_id: str) -> Delivery:
        def row(db: sqlite3.Connection) -> Delivery:
            self._row(db, tenant, subscription_id)
            found = db.execute("SELECT * FROM deliveries WHERE delivery_id = ? AND subscription_id = ?",
                               (delivery_id, subscription_id)).fetchone()
            if found is None:
                raise SubscriptionNotFound(delivery_id)
            return _delivery(db, found)

        return await self._read(row)

    # --- callbacks (the API, when a run is started with a callback_url) -----------------------

    async def add_callback(self, tenant: str, run_id: str, url: str, event_types: list[str],
                           created_by: str) -> bool:
        """Call `url` with the run's `event_types`; False when the run already has a callback (the
        same start asked again, with its idempotency key)."""
        def insert(db: sqlite3.Connection) -> bool:
            if db.execute("SELECT 1 FROM subscriptions WHERE tenant = ? AND kind = 'callback' AND run_id = ?",
                          (tenant, run_id)).fetchone():
                return False
            stamp, key_id = _now(), self.keyring.active
            db.execute(
                "INSERT INTO subscriptions (subscription_id, tenant, kind, run_id, key_id, url, event_types, "
                "workflows, status, created_by, created_at, updated_at) "
                "VALUES (?, ?, 'callback', ?, ?, ?, ?, '[]', 'active', ?, ?, ?)",
                ("cb_" + secrets.token_hex(12), tenant, run_id, key_id, self._seal(url, key_id),
                 json.dumps(event_types), created_by, stamp, stamp))
            return True

        return await self._change(insert)

    async def remove_callback(self, tenant: str, run_id: str) -> None:
        await self._change(lambda db: db.execute(
            "DELETE FROM subscriptions WHERE tenant = ? AND kind = 'callback' AND run_id = ?", (tenant, run_id)))

    # --- delivering (the workers) -------------------------------------------------------------

    def interested(self, tenant: str, run_id: str | None) -> list[Interest]:
        """The tenant's subscriptions, and the run's callback: who may want the run's events."""
        def rows(db: sqlite3.Connection) -> list[Interest]:
            found = db.execute(
                "SELECT subscription_id, status, event_types, workflows FROM subscriptions WHERE tenant = ? AND "
                "(kind = 'subscription' OR run_id = ?)", (tenant, run_id)).fetchall()
            return [Interest(subscription_id=row["subscription_id"], status=row["status"],
                             event_types=json.loads(row["event_types"]), workflows=json.loads(row["workflows"]))
                    for row in found]

        if not self.path.exists():
            return []  # nobody ever subscribed: no database to open
        return self._run(rows)

    def record_deliveries(self, interests: list[Interest], event: Event) -> list[tuple[str, str]]:
        """A delivery row per interested subscription for `event` (the existing one when dispatched
        before): (subscription id, delivery id) of those to send now; paused ones are logged as skipped."""
        def insert(db: sqlite3.Connection) -> list[tuple[str, str]]:
            to_send = []
            for subscription_id, status in ((i.subscription_id, i.status) for i in interests):
                existing = db.execute("SELECT delivery_id FROM deliveries WHERE subscription_id = ? AND event_id = ?",
                                      (subscription_id, event.id)).fetchone()
                if existing is not None:
                    delivery_id = existing["delivery_id"]
                else:
                    delivery_id = "dlv_" + secrets.token_hex(12)
                    stamp = _now()
                    skipped = status != "active"
                    db.execute(
                        "INSERT INTO deliveries (delivery_id, subscription_id, event_id, event_type, run_id, event, "
                        "status, status_reason, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (delivery_id, subscription_id, event.id, event.type, event.run_id, event.model_dump_json(),
                         "skipped" if skipped else "pending", f"the subscription was {status}" if skipped else None,
                         stamp, stamp))
                if status == "active":
                    to_send.append((subscription_id, delivery_id))
            return to_send

        return self._run(insert, "IMMEDIATE")

    def target(self, subscription_id: str, platform_secret: Callable[[], str]) -> Target | None:
        """Where a delivery goes and what signs it; None for a subscription deleted since."""
        def row(db: sqlite3.Connection) -> sqlite3.Row | None:
            return db.execute("SELECT * FROM subscriptions WHERE subscription_id = ?", (subscription_id,)).fetchone()

        found = self._run(row)
        if found is None:
            return None
        until = _when(found["previous_until"])
        if found["kind"] == "callback":
            signing = [platform_secret()]
        elif found["previous_secret"] is not None and until and until > datetime.now(UTC):
            signing = [self._open(found, "secret") or "", self._open(found, "previous_secret") or ""]
        else:
            signing = [self._open(found, "secret") or ""]
        return Target(subscription_id=subscription_id, tenant=found["tenant"], kind=found["kind"],
                      url=self._open(found, "url") or "", secrets=signing, status=found["status"])

    def pending_event(self, delivery_id: str) -> tuple[Event, DeliveryStatus] | None:
        found = self._run(lambda db: db.execute("SELECT event, status FROM deliveries WHERE delivery_id = ?",
                                                (delivery_id,)).fetchone())
        return None if found is None else (Event.model_validate_json(found["event"]), found["status"])

    def record_attempt(self, delivery_id: str, status_code: int | None, latency_ms: float,
                       error: str | None, outcome: DeliveryStatus | None, reason: str | None = None) -> None:
        def write(db: sqlite3.Connection) -> None:
            stamp = _now()
            # Numbered in the log, not by Temporal's attempt: a redelivery's attempts follow the first ones.
            db.execute("INSERT INTO attempts (delivery_id, number, at, status_code, latency_ms, error) VALUES "
                       "(?, (SELECT COALESCE(MAX(number), 0) + 1 FROM attempts WHERE delivery_id = ?), ?, ?, ?, ?)",
                       (delivery_id, delivery_id, stamp, status_code, round(latency_ms, 1),
                        error[:ERROR_CHARS] if error else None))
            if outcome is not None:
                db.execute("UPDATE deliveries SET status = ?, status_reason = ?, updated_at = ? WHERE delivery_id = ?",
                           (outcome, reason, stamp, delivery_id))

        self._run(write, "IMMEDIATE")

    async def reset_delivery(self, delivery_id: str) -> None:
        """Pending again, for a redelivery."""
        await asyncio.to_thread(self.set_delivery, delivery_id, "pending", None)

    def set_delivery(self, delivery_id: str, status: DeliveryStatus, reason: str | None) -> None:
        self._run(lambda db: db.execute("UPDATE deliveries SET status = ?, status_reason = ?, updated_at = ? "
                                        "WHERE delivery_id = ?", (status, reason, _now(), delivery_id)), "IMMEDIATE")

    def disable(self, subscription_id: str, reason: str) -> bool:
        """Disable an active subscription; False when it was not active (already done, or paused)."""
        def change(db: sqlite3.Connection) -> bool:
            return db.execute("UPDATE subscriptions SET status = 'disabled', status_reason = ?, updated_at = ? "
                              "WHERE subscription_id = ? AND status = 'active'",
                              (reason, _now(), subscription_id)).rowcount == 1

        return self._run(change, "IMMEDIATE")


def _set(db: sqlite3.Connection, subscription_id: str, values: dict[str, Any]) -> None:
    db.execute(f"UPDATE subscriptions SET {', '.join(f'{column} = ?' for column in values)} WHERE subscription_id = ?",
               (*values.values(), subscription_id))


def _delivery(db: sqlite3.Connection, row: sqlite3.Row) -> Delivery:
    attempts = [Attempt(number=a["number"], at=_when(a["at"]), status_code=a["status_code"],
                        latency_ms=a["latency_ms"], error=a["error"])
                for a in db.execute("SELECT * FROM attempts WHERE delivery_id = ? ORDER BY number",
                                    (row["delivery_id"],))]
    return Delivery(id=row["delivery_id"], event_id=row["event_id"], event_type=row["event_type"], run_id=row["run_id"],
                    status=row["status"], status_reason=row["status_reason"], created_at=_when(row["created_at"]),
                    updated_at=_when(row["updated_at"]), attempts=attempts)

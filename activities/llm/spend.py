"""What each tenant has spent on model calls, per UTC day: the ledger behind the daily spend cap.

`SpendLedger` is what the LLM service needs; `SqliteSpendLedger` keeps it in one SQLite file in
the data directory, which every worker process on the host shares and which survives restarts.
Workers on several hosts need one shared store (a database they all reach) behind the same two
methods: each host's own file would only see its own spending.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
import threading
from contextlib import closing
from datetime import date
from pathlib import Path
from typing import Protocol

from steward.settings import Settings

SPEND_DB_FILE = "llm-spend.sqlite"
# Writers queue on SQLite's lock; one UPSERT takes microseconds, so a wait this long means trouble.
BUSY_TIMEOUT_S = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_spend (
    tenant   TEXT NOT NULL,
    day      TEXT NOT NULL,
    cost_usd REAL NOT NULL,
    PRIMARY KEY (tenant, day)
)
"""
# One statement, so concurrent workers add to the total instead of overwriting each other's.
_ADD = """
INSERT INTO llm_spend (tenant, day, cost_usd) VALUES (?, ?, ?)
ON CONFLICT (tenant, day) DO UPDATE SET cost_usd = cost_usd + excluded.cost_usd
"""
_SPENT = "SELECT cost_usd FROM llm_spend WHERE tenant = ? AND day = ?"


class SpendLedger(Protocol):
    async def spent(self, tenant: str, day: date) -> float:
        """USD the tenant's model calls cost on `day` (UTC)."""
        ...

    async def add(self, tenant: str, day: date, cost_usd: float) -> None:
        """Add one call's cost to the tenant's total for `day`."""
        ...


_CREATION_LOCK = threading.Lock()
_WAL_RETRY_S = 0.05


def _use_wal(db: sqlite3.Connection) -> None:
    """WAL, so workers checking the cap never block the one adding to it. Switching needs an
    exclusive lock, and SQLite reports "locked" at once instead of waiting on its busy timeout
    when another process holds the file open: retry within that timeout, and skip the switch
    once any process has made it (the mode is stored in the file)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        if db.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            return
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(_WAL_RETRY_S)


class SqliteSpendLedger:
    """One row per tenant and day. Calls run in a thread: the worker's event loop never waits on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ready = False

    async def spent(self, tenant: str, day: date) -> float:
        return await asyncio.to_thread(self._spent, tenant, day.isoformat())

    async def add(self, tenant: str, day: date, cost_usd: float) -> None:
        await asyncio.to_thread(self._add, tenant, day.isoformat(), cost_usd)

    def _spent(self, tenant: str, day: str) -> float:
        with closing(self._connect()) as db:
            row = db.execute(_SPENT, (tenant, day)).fetchone()
        return row[0] if row else 0.0

    def _add(self, tenant: str, day: str, cost_usd: float) -> None:
        with closing(self._connect()) as db:
            db.execute(_ADD, (tenant, day, cost_usd))

    def _connect(self) -> sqlite3.Connection:
        # A connection per call: connections cannot move between the threads to_thread picks,
        # and opening a local SQLite file costs far less than the model call it accounts for.
        if not self._ready:
            self._create()
        return sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)

    def _create(self) -> None:
        with _CREATION_LOCK:  # threads of one process create the file one at a time
            if self._ready:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)) as db:
                _use_wal(db)
                db.execute(_SCHEMA)
            self._ready = True

# A total outlives its day by this much: long enough to read yesterday's, short enough to clean itself.
REDIS_KEEP_S = 3 * 24 * 3600
REDIS_TIMEOUT_S = 2.0


class RedisSpendLedger:
    """One total per tenant and UTC day, added to with INCRBYFLOAT: atomic, so workers on every host
    add to one number. A Redis that cannot be reached fails the LLM step's attempt (Temporal
    retries it): without the total, the cap cannot be honoured. Keep Redis persistent (AOF) so a
    restart of Redis does not forget the day's spending."""

    def __init__(self, url: str) -> None:
        import redis.asyncio

        self._redis = redis.asyncio.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT_S,
                                                   socket_connect_timeout=REDIS_TIMEOUT_S)

    @staticmethod
    def _key(tenant: str, day: date) -> str:
        # The tenant's digest, not its name: nothing identifying in the keys of a shared Redis.
        return f"steward:llm-spend:{day.isoformat()}:{hashlib.sha256(tenant.encode()).hexdigest()[:32]}"

    async def spent(self, tenant: str, day: date) -> float:
        value = await self._redis.get(self._key(tenant, day))
        return float(value) if value is not None else 0.0

    async def add(self, tenant: str, day: date, cost_usd: float) -> None:
        key = self._key(tenant, day)
        async with self._redis.pipeline(transaction=True) as pipe:
            await pipe.incrbyfloat(key, cost_usd).expire(key, REDIS_KEEP_S).execute()


def spend_ledger(settings: Settings) -> SpendLedger:
    """The ledger every worker that shares `settings`' Redis sees; this host's file without one."""
    if settings.redis_url is not None:
        return RedisSpendLedger(settings.redis_url.get_secret_value())
    return SqliteSpendLedger(settings.data_dir / SPEND_DB_FILE)

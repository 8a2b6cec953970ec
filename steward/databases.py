"""Steward's small SQLite databases under the data dir (the embedded connectors, webhook
subscriptions): private, durable, created whole, and versioned.

- Private: the file is made under a temporary name with mode 0600 and linked into place
  (steward/files.py:create_once), so no process ever opens a half-made file and processes starting
  at once agree on one; SQLite gives its -wal and -shm files the database's mode.
- Durable: WAL with synchronous=NORMAL loses no commit when a process dies (only a power cut may
  lose the last ones), and readers never wait for a writer.
- Versioned: the schema version is `PRAGMA user_version`; a file from a newer Steward is refused
  rather than misread.

One connection per operation: a connection cannot move between the threads `asyncio.to_thread`
picks, and opening a local file costs microseconds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from steward.files import create_once

T = TypeVar("T")


class SchemaTooNew(Exception):
    """The database was made by a newer Steward."""


@dataclass(frozen=True)
class Schema:
    version: int
    statements: Sequence[str]


def connect(path: Path, schema: Schema, *, busy_timeout_s: float) -> sqlite3.Connection:
    """A connection to the database at `path` (created when absent), its rows sqlite3.Row, in
    autocommit mode: callers open their own transactions. Raises SchemaTooNew."""
    if not path.exists():
        _create(path, schema)
    # mode=rw: SQLite must never create the file itself, with the umask's mode and no schema.
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=busy_timeout_s,
                         isolation_level=None)
    try:
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA synchronous=NORMAL")
        _migrate(db, schema)
    except BaseException:
        db.close()
        raise
    return db


def transaction(db: sqlite3.Connection, work: Callable[[sqlite3.Connection], T], mode: str = "DEFERRED") -> T:
    """`work` in one transaction: committed when it returns, rolled back when it raises. IMMEDIATE
    takes the write lock before the first read, for a read-then-write that must not race."""
    db.execute(f"BEGIN {mode}")
    try:
        result = work(db)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return result


def _create(path: Path, schema: Schema) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)

    def made(temporary: str) -> None:
        with closing(sqlite3.connect(temporary, isolation_level=None)) as db:
            # Recorded in the file: every later connection uses WAL.
            db.execute("PRAGMA journal_mode=WAL")
            _migrate(db, schema)

    create_once(path, made)


def _migrate(db: sqlite3.Connection, schema: Schema) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > schema.version:
        raise SchemaTooNew(f"the database has schema version {version}; this Steward knows up to "
                           f"{schema.version}: upgrade it")
    if version == schema.version:
        return

    def create_tables(db: sqlite3.Connection) -> None:
        for statement in schema.statements:
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {schema.version}")

    transaction(db, create_tables, "IMMEDIATE")

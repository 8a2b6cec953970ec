"""API keys for services (CI pipelines, Alertmanager): long-lived bearer credentials, revocable.

A key looks like `stw_<id>_<secret>` and is sent as `Authorization: Bearer <key>`, like a JWT.
The id finds the record without scanning; the secret is 32 random bytes. Only a hash of the key
is stored, in `<data_dir>/api-keys.json` or STEWARD_API_KEYS_FILE (mode 0600), with the key's name, roles, tenant and
dates: the file lets you list and revoke keys, never use them. `steward apikey create` prints
the key once. docs/security.md is the reference.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from steward.identity import IDENTIFIER_PATTERN, InvalidToken, Principal
from steward.settings import API_KEYS_FILE, SECRET_FILE_MODE

PREFIX = "stw_"
KEYS_FILE = API_KEYS_FILE
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_KEY = re.compile(r"^stw_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


class ApiKeyError(Exception):
    """A request about keys that cannot be carried out (duplicate name, unknown key); says why."""


class ApiKeyRecord(BaseModel):
    id: str
    name: str = Field(pattern=NAME_PATTERN)
    roles: list[str] = Field(min_length=1)
    tenant: str = Field(pattern=IDENTIFIER_PATTERN)
    created_at: datetime
    revoked_at: datetime | None = None
    # SHA-256 of the whole key. No salt or slow hash is needed: the secret is 256 random bits,
    # so there is no dictionary to try and brute force is hopeless; slow hashes protect people's
    # low-entropy passwords, and here would only slow down every request.
    sha256: str

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def principal(self) -> Principal:
        return Principal(sub=f"apikey:{self.name}", roles=tuple(self.roles), tenant=self.tenant)


class KeysFile(BaseModel):
    version: int = 1
    keys: list[ApiKeyRecord] = Field(default_factory=list)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_key(token: str) -> bool:
    return token.startswith(PREFIX)


@cache
def store(path: Path) -> ApiKeyStore:
    """One store per keys file and process, so its read cache serves every request."""
    return ApiKeyStore(path)


class ApiKeyStore:
    """One keys file (Settings.api_keys_path). Reads are cached by the file's stat, so a request
    costs a stat() rather than a parse, and a revocation by another process, or on another host
    sharing the file, counts from its next request."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")
        self._cached: tuple[tuple[int, int, int], dict[str, ApiKeyRecord]] | None = None

    # --- verifying a presented key ------------------------------------------------------------

    def verify(self, key: str) -> Principal:
        """The principal of a valid, unrevoked key; InvalidToken otherwise."""
        match = _KEY.match(key)
        if not match:
            raise InvalidToken("API key is malformed")
        record = self._records().get(match.group(1))
        # The comparison takes the same time whatever the digest, so timing tells nothing.
        if record is None or not hmac.compare_digest(record.sha256, _digest(key)):
            raise InvalidToken("API key is not valid")
        if record.revoked:
            raise InvalidToken(f"API key {record.name!r} has been revoked")
        return record.principal()

    def _records(self) -> dict[str, ApiKeyRecord]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return {}
        # Writes replace the file (new inode), so this changes with every write.
        signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if self._cached is None or self._cached[0] != signature:
            self._cached = (signature, {record.id: record for record in self._read().keys})
        return self._cached[1]

    # --- managing keys (the CLI) --------------------------------------------------------------

    def list(self) -> list[ApiKeyRecord]:
        return self._read().keys

    def create(self, name: str, roles: list[str], tenant: str) -> tuple[str, ApiKeyRecord]:
        """A new key and its record; the key itself is returned here and stored nowhere."""
        key = f"{PREFIX}{secrets.token_hex(8)}_{secrets.token_urlsafe(32)}"
        key_id = key.split("_")[1]
        with self._locked() as document:
            if any(r.name == name and not r.revoked for r in document.keys):
                raise ApiKeyError(f"an active key named {name!r} exists; revoke it first or choose another name")
            record = ApiKeyRecord(id=key_id, name=name, roles=roles, tenant=tenant,
                                  created_at=datetime.now(UTC), sha256=_digest(key))
            document.keys.append(record)
        return key, record

    def revoke(self, id_or_name: str) -> ApiKeyRecord:
        with self._locked() as document:
            found = [r for r in document.keys if not r.revoked and id_or_name in (r.id, r.name)]
            if not found:
                raise ApiKeyError(f"no active key with id or name {id_or_name!r} (`steward apikey list`)")
            found[0].revoked_at = datetime.now(UTC)  # names are unique among active keys
            return found[0]

    def _read(self) -> KeysFile:
        try:
            return KeysFile.model_validate_json(self.path.read_bytes())
        except FileNotFoundError:
            return KeysFile()

    @contextmanager
    def _locked(self) -> Iterator[KeysFile]:
        """Read, let the caller change, write back atomically; one writer at a time across processes."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, SECRET_FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            document = self._read()
            yield document
            self._write(document)
        finally:
            os.close(fd)  # releases the lock

    def _write(self, document: KeysFile) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)  # a leftover could have another mode; O_EXCL creates ours
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE_MODE)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(document.model_dump(mode="json"), indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

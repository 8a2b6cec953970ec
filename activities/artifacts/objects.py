"""The storage under records that must outlive Temporal: named objects, written whole.

`ObjectStore` is the interface an object store (S3 and its kin) offers natively: write an object
only if its key is new (S3's `If-None-Match: *`), replace one, read one, list keys under a prefix.
There is no append and no delete: an append-only log is a series of new objects
(activities/audit/). `FileObjectStore` keeps objects as files under a directory of the data dir,
each written completely before it appears (steward/files.create_once), mode 0600.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Protocol

from steward.files import create_once, replace_whole
from steward.settings import Settings

# Keys are '/'-separated segments of safe characters: they become file paths here, object keys there.
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@:=-]{0,199}$")


class ObjectNotFound(Exception):
    pass


class ObjectStoreUnavailable(Exception):
    """The configured store cannot be used (a missing bucket): said at start, not at the first report."""


class ObjectStore(Protocol):
    def create(self, key: str, data: bytes) -> bool:
        """Write `key` unless it exists; False when it did (and nothing was written)."""

    def replace(self, key: str, data: bytes) -> None: ...

    def read(self, key: str) -> bytes:
        """The object's bytes; ObjectNotFound when there is none."""

    def list(self, prefix: str) -> list[str]:
        """The keys directly under `prefix` (a folder; "" for the top), sorted."""


def check_key(key: str) -> str:
    segments = key.split("/")
    if not all(_SEGMENT.match(s) and ".." not in s for s in segments):
        raise ValueError(f"{key!r} is not a safe object key")
    return key


class FileObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def create(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        if path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)

        def write(temporary: str) -> None:
            with open(temporary, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())

        if not create_once(path, write):
            return False
        _fsync_dir(path.parent)
        return True

    def replace(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        replace_whole(path, data)

    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    def list(self, prefix: str) -> list[str]:
        directory = self._path(prefix) if prefix else self.root
        if not directory.is_dir():
            return []
        return sorted(f"{prefix}/{p.name}" if prefix else p.name
                      for p in directory.iterdir() if not p.name.startswith("."))


def _fsync_dir(directory: Path) -> None:
    """The new name is durable once its directory is: a power cut must not lose an entry."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def object_store(settings: Settings, area: str, directory: Path) -> ObjectStore:
    """Where `area` (artifacts, audit) keeps its objects: `directory` of the data dir, or its
    folder of the shared bucket."""
    if settings.object_store == "file":
        return FileObjectStore(directory)
    from activities.artifacts.s3 import S3ObjectStore

    assert settings.s3_bucket is not None  # the settings refuse s3 without a bucket
    return S3ObjectStore(
        settings.s3_bucket, f"{settings.s3_prefix}{area}/", endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region, server_side_encryption=settings.s3_server_side_encryption,
        kms_key_id=settings.s3_kms_key_id, lock_days=settings.s3_audit_lock_days if area == "audit" else None)


def check_object_store(settings: Settings) -> None:
    """Raise ObjectStoreUnavailable now when the shared bucket cannot be used (files always can)."""
    if settings.object_store == "s3":
        store = object_store(settings, "artifacts", settings.artifacts_dir)
        store.check()  # type: ignore[attr-defined]

"""Storing and reading run artifacts.

`ArtifactStore` is the interface. `FileArtifactStore` keeps artifacts as objects of an
ObjectStore (activities/artifacts/objects.py), the backend the audit log is kept in too: files
under the data dir (`<data_dir>/artifacts/<run id>/<name>`, with a metadata file beside each), or
a shared S3-compatible bucket (activities/artifacts/s3.py, STEWARD_OBJECT_STORE=s3). Files are
encrypted with the platform keyring (AES-256-GCM, steward/codec.py) when one is given, as it
always is in Steward, under the run's tenant's own key; the digest is the plaintext's, the
document's own identity. Writes are whole (a file's temp-fsync-rename, one PutObject), so a reader
never sees half a file, and a retried activity's second write replaces the first whole.

`reencrypt` moves an artifact to the active key (`steward keys reencrypt`): the file first, then
its metadata. Interrupted between the two, the metadata names the old key while the file is under
the new one; reading then tries the keyring's other keys (AES-GCM tells a wrong key for certain),
and the next `reencrypt` finds the file current and rewrites only the metadata.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from activities.artifacts.objects import FileObjectStore, ObjectNotFound, ObjectStore, object_store
from steward import runtime
from steward.codec import Keyring, KeyringError
from steward.settings import Settings

# Run ids and artifact names become path segments: no separators, no dot-dot, bounded length.
# ':' because a run a schedule starts has an id ending in its RFC 3339 time (…-2026-11-30T02:00:00Z).
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")
_META_SUFFIX = ".meta.json"


class ArtifactRef(BaseModel):
    """What a workflow keeps of an artifact: never the bytes."""

    name: str
    content_type: str
    size: int = Field(ge=0)
    sha256: str


class StoredArtifact(ArtifactRef):
    key_id: str | None = Field(None, description="The key that encrypted the file; None if stored in clear.")
    tenant: str | None = Field(None, description="Whose key (derived from key_id) encrypted it; None: the keyring's.")


class Reencrypted(BaseModel):
    """What `reencrypt` did to one artifact."""

    run_id: str
    name: str
    outcome: Literal["current", "reencrypted", "failed"]
    problem: str | None = None


class ArtifactNotFound(Exception):
    pass


class ArtifactCorrupted(Exception):
    """The stored bytes no longer match the digest recorded when they were written."""


def check_segment(value: str, what: str) -> str:
    if not _SAFE.match(value) or ".." in value or value.endswith(_META_SUFFIX):
        raise ValueError(f"{what} {value!r} is not a safe artifact path segment")
    return value


class ArtifactStore(Protocol):
    def put(self, run_id: str, name: str, data: bytes, content_type: str, *, tenant: str | None = None) -> ArtifactRef:
        ...

    def read(self, run_id: str, name: str) -> tuple[ArtifactRef, bytes]: ...

    def list(self, run_id: str) -> list[ArtifactRef]: ...


class FileArtifactStore:
    """Artifacts as objects `<run id>/<name>` and `<run id>/<name>.meta.json`: in files under
    `root`, or in `objects` when given."""

    def __init__(self, root: Path, keyring: Keyring | None = None, objects: ObjectStore | None = None) -> None:
        self.root = root
        self.keyring = keyring
        self.objects = objects or FileObjectStore(root)

    def _key(self, run_id: str, name: str) -> str:
        return f"{check_segment(run_id, 'run id')}/{check_segment(name, 'artifact name')}"

    def put(self, run_id: str, name: str, data: bytes, content_type: str, *, tenant: str | None = None) -> ArtifactRef:
        key = self._key(run_id, name)
        ref = ArtifactRef(name=name, content_type=content_type, size=len(data), sha256=hashlib.sha256(data).hexdigest())
        self._write(key, StoredArtifact(**ref.model_dump(), tenant=tenant), data)
        return ref

    def _write(self, key: str, meta: StoredArtifact, data: bytes) -> None:
        key_id, stored = self.keyring.encrypt(data, meta.tenant) if self.keyring else (None, data)
        # The file first, then its metadata: a reader finds an artifact only once both are whole.
        self.objects.replace(key, stored)
        meta = meta.model_copy(update={"key_id": key_id, "tenant": meta.tenant if key_id else None})
        self.objects.replace(f"{key}{_META_SUFFIX}", meta.model_dump_json().encode())

    def read(self, run_id: str, name: str) -> tuple[ArtifactRef, bytes]:
        stored, data, _ = self._read(run_id, name)
        return _ref(stored), data

    def _read(self, run_id: str, name: str) -> tuple[StoredArtifact, bytes, tuple[str | None, str | None]]:
        """The metadata, the plaintext, and the key id and tenant that really encrypted the file."""
        key = self._key(run_id, name)
        try:
            stored = StoredArtifact.model_validate_json(self.objects.read(f"{key}{_META_SUFFIX}"))
            data = self.objects.read(key)
        except ObjectNotFound:
            raise ArtifactNotFound(f"run {run_id!r} has no artifact {name!r}") from None
        mismatch = ArtifactCorrupted(f"artifact {name!r} of run {run_id!r} does not match its recorded SHA-256")
        if stored.key_id is None:
            if hashlib.sha256(data).hexdigest() == stored.sha256:
                return stored, data, (None, None)  # stored in clear
            if self.keyring is None:
                raise mismatch
            try:  # a file stored in clear, re-encrypted before its metadata could say so
                data, used = self._decrypt(stored.model_copy(update={"key_id": self.keyring.active}), data, run_id)
            except ArtifactCorrupted:
                raise mismatch from None
        elif self.keyring is None:
            raise ArtifactCorrupted(f"artifact {name!r} is encrypted and no keyring is configured")
        else:
            data, used = self._decrypt(stored, data, run_id)
        if hashlib.sha256(data).hexdigest() != stored.sha256:
            raise mismatch
        return stored, data, used

    def _decrypt(self, stored: StoredArtifact, data: bytes, run_id: str) -> tuple[bytes, tuple[str, str | None]]:
        assert self.keyring is not None and stored.key_id is not None
        # The recorded key first; the others only after a re-encryption interrupted between the
        # file and its metadata (module docstring), which may also have been moving the file from
        # the keyring's own key to its tenant's.
        kids = (stored.key_id, *(k for k in self.keyring.keys if k != stored.key_id))
        scopes = (stored.tenant, None) if stored.tenant is not None else (None,)
        problem = None
        for tenant in scopes:
            for kid in kids:
                try:
                    return self.keyring.decrypt(kid, data, tenant), (kid, tenant)
                except KeyringError as exc:
                    problem = problem or exc
        raise ArtifactCorrupted(f"artifact {stored.name!r} of run {run_id!r}: {problem}") from None

    def list(self, run_id: str) -> list[ArtifactRef]:
        return sorted((_ref(meta) for meta in self._metas(run_id)), key=lambda r: r.name)

    def _metas(self, run_id: str) -> Iterator[StoredArtifact]:
        metas = [key for key in self.objects.list(check_segment(run_id, "run id")) if key.endswith(_META_SUFFIX)]
        return (StoredArtifact.model_validate_json(self.objects.read(key)) for key in metas)

    def run_ids(self) -> list[str]:
        return [key for key in self.objects.list("") if not key.endswith(_META_SUFFIX)]

    def reencrypt(self, run_id: str, name: str, tenant: str | None = None) -> Reencrypted:
        """The artifact under the keyring's active key: its tenant's key, or `tenant`'s when it was
        written before tenants had keys of their own. Idempotent: an artifact already there is
        left as it is."""
        assert self.keyring is not None, "re-encryption needs the keyring"
        try:
            stored, data, used = self._read(run_id, name)
        except ArtifactCorrupted as exc:
            return Reencrypted(run_id=run_id, name=name, outcome="failed", problem=str(exc))
        scope = stored.tenant if stored.tenant is not None else tenant
        if used == (self.keyring.active, scope) and (stored.key_id, stored.tenant) == used:
            return Reencrypted(run_id=run_id, name=name, outcome="current")
        key = self._key(run_id, name)
        if stored.tenant != scope:
            # The tenant goes into the metadata before the file moves to its key: interrupted at
            # any point, a reader still finds the key (see _read).
            stored = stored.model_copy(update={"tenant": scope})
            self.objects.replace(f"{key}{_META_SUFFIX}", stored.model_dump_json().encode())
        self._write(key, stored, data)
        return Reencrypted(run_id=run_id, name=name, outcome="reencrypted")


def _ref(stored: StoredArtifact) -> ArtifactRef:
    return ArtifactRef(**stored.model_dump(exclude={"key_id", "tenant"}))


def artifact_store(settings: Settings, keyring: Keyring | None) -> FileArtifactStore:
    """The artifacts of `settings`: files in the data dir, or the shared bucket's `artifacts/`."""
    return FileArtifactStore(settings.artifacts_dir, keyring,
                             object_store(settings, "artifacts", settings.artifacts_dir))


_current: tuple[Settings, FileArtifactStore] | None = None


def default_store() -> ArtifactStore:
    """The store activities use: this process's settings and keyring (steward.runtime), kept while
    they are (an S3 client keeps its connections between reports)."""
    global _current
    settings = runtime.settings()
    if _current is None or _current[0] is not settings:
        _current = (settings, artifact_store(settings, runtime.keyring()))
    return _current[1]


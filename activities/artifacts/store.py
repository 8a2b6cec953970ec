"""Storing and reading run artifacts.

`ArtifactStore` is the interface. `FileArtifactStore` keeps artifacts as objects of an
ObjectStore (activities/artifacts/objects.py), the backend the audit log is kept in too: files
under the data dir (`<data_dir>/artifacts/<run id>/<name>`, with a metadata file beside each), or
a shared S3-compatible bucket (activities/artifacts/s3.py, STEWARD_OBJECT_STORE=s3). Files are
encrypted with the platform keyring (AES-256-GCM, steward/codec.py) when one is given, as it
always is in Steward; the digest is the plaintext's, the document's own identity. Writes are
whole (a file's temp-fsync-rename, one PutObject), so a reader never sees half a file, and a
retried activity's second write replaces the first whole.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Protocol

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


class ArtifactNotFound(Exception):
    pass


class ArtifactCorrupted(Exception):
    """The stored bytes no longer match the digest recorded when they were written."""


def check_segment(value: str, what: str) -> str:
    if not _SAFE.match(value) or ".." in value or value.endswith(_META_SUFFIX):
        raise ValueError(f"{what} {value!r} is not a safe artifact path segment")
    return value


class ArtifactStore(Protocol):
    def put(self, run_id: str, name: str, data: bytes, content_type: str) -> ArtifactRef: ...

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

    def put(self, run_id: str, name: str, data: bytes, content_type: str) -> ArtifactRef:
        key = self._key(run_id, name)
        ref = ArtifactRef(name=name, content_type=content_type, size=len(data), sha256=hashlib.sha256(data).hexdigest())
        key_id, stored = self.keyring.encrypt(data) if self.keyring else (None, data)
        # The file first, then its metadata: a reader finds an artifact only once both are whole.
        self.objects.replace(key, stored)
        meta = StoredArtifact(**ref.model_dump(), key_id=key_id)
        self.objects.replace(f"{key}{_META_SUFFIX}", meta.model_dump_json().encode())
        return ref

    def read(self, run_id: str, name: str) -> tuple[ArtifactRef, bytes]:
        key = self._key(run_id, name)
        try:
            stored = StoredArtifact.model_validate_json(self.objects.read(f"{key}{_META_SUFFIX}"))
            data = self.objects.read(key)
        except ObjectNotFound:
            raise ArtifactNotFound(f"run {run_id!r} has no artifact {name!r}") from None
        if stored.key_id is not None:
            if self.keyring is None:
                raise ArtifactCorrupted(f"artifact {name!r} is encrypted and no keyring is configured")
            try:
                data = self.keyring.decrypt(stored.key_id, data)
            except KeyringError as exc:
                raise ArtifactCorrupted(f"artifact {name!r} of run {run_id!r}: {exc}") from None
        ref = ArtifactRef(**stored.model_dump(exclude={"key_id"}))
        if hashlib.sha256(data).hexdigest() != ref.sha256:
            raise ArtifactCorrupted(f"artifact {name!r} of run {run_id!r} does not match its recorded SHA-256")
        return ref, data

    def list(self, run_id: str) -> list[ArtifactRef]:
        metas = [key for key in self.objects.list(check_segment(run_id, "run id")) if key.endswith(_META_SUFFIX)]
        refs = (StoredArtifact.model_validate_json(self.objects.read(key)) for key in metas)
        return sorted((ArtifactRef(**r.model_dump(exclude={"key_id"})) for r in refs), key=lambda r: r.name)


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

